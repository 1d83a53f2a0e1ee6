"""Training SSBA's StegaStamp encoder and decoder (Li et al., ICCV 2021; Tancik et al.,
CVPR 2020).

SSBA hides a fixed bit string in every poisoned image with a StegaStamp encoder trained
beforehand on the dataset; the residual it adds depends on the image, so every poison has
its own invisible trigger. The encoder E and decoder D are trained as StegaStamp trains
them, on random bit strings (so the encoder learns to hide any string, not just the
attack's):

    s ~ Bernoulli(0.5)^L,   r = E(x, s) (|r| <= max_residual),   x~ = clip(x + r, 0, 1)
    L = BCE(D(q(x~)), s) + ramp(t) * l2_weight * mean((x~ - x)^2)

q rounds to the 8-bit grid the poisoned images are stored in (straight-through: the
decoder learns to read what the dataset will hold). ramp(t) is 0 for the first
`ssba_l2_start` of the steps, then grows linearly to 1 over the next `ssba_ramp_fraction`:
StegaStamp keeps its image losses off for the first 1,500 of 140,000 steps and ramps
them in over 15,000, so that the secret is learned before the residual is squeezed
(started at once, the image loss drove the residual to zero on digits and the secret
was never learned). Both networks take Adam at `generator_lr` (StegaStamp: 1e-4).

Left out, for small images and an offline library: StegaStamp's LPIPS and critic losses
(their networks cannot be downloaded here), its spatial transformer and its print-and-photo
distortions (the poisoned images are only ever quantized). The hard L-inf bound on the
residual keeps the trigger small in their place.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from abd_jax.data import Dataset
from abd_jax.models.trigger_nets import StegaDecoder, StegaEncoder, generator_depth
from abd_jax.generators.runner import GeneratorTrainer, batch_order, run_steps
from abd_jax.poison.sample_specific import bit_accuracy, psnr, to_8bit

Array = jax.Array
MAX_DEPTH = 3


def networks(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> dict:
  """{'encoder': E, 'decoder': D} for images (H, W, C) and the `attack` block `cfg`."""
  h, w, _ = image_shape
  depth = generator_depth(h, w, MAX_DEPTH)
  return {'encoder': StegaEncoder(cfg.ssba_max_residual, cfg.generator_width, depth),
          'decoder': StegaDecoder(cfg.ssba_bits, cfg.generator_width, depth)}


def quantize(x: Array) -> Array:
  """x rounded to multiples of 1/255, with the identity's gradient (straight-through)."""
  return x + jax.lax.stop_gradient(to_8bit(x) - x)


def encode(encoder, variables: dict, x: Array, bits: Array) -> Array:
  """The encoded image clip(x + E(x, bits), 0, 1): x [B,H,W,C] in [0,1], bits [B,L]."""
  return jnp.clip(x + encoder.apply(variables, x, bits), 0.0, 1.0)


def make_trainer(config: ml_collections.ConfigDict, data: Dataset) -> GeneratorTrainer:
  """The StegaStamp trainer of `config.attack` (name 'ssba') on the clean `data`."""
  a, batch = config.attack, config.train.batch_size
  nets = networks(a, data.image_shape)
  enc, dec = nets['encoder'], nets['decoder']
  x_train = jnp.asarray(data.x_train, jnp.float32) / 255.0
  x_test = jnp.asarray(data.x_test, jnp.float32) / 255.0
  n = len(data.y_train)
  steps = n // batch
  total_steps = a.generator_epochs * steps
  ramp_start = a.ssba_l2_start * total_steps
  ramp_steps = max(1.0, a.ssba_ramp_fraction * total_steps)
  tx = optax.adam(a.generator_lr)

  def init(key: Array) -> dict:
    ke, kd = jax.random.split(key)
    x = jnp.zeros((1, *data.image_shape), jnp.float32)
    params = {'encoder': enc.init(ke, x, jnp.zeros((1, a.ssba_bits)))['params'],
              'decoder': dec.init(kd, x)['params']}
    return {'params': params, 'opt': tx.init(params), 'step': jnp.zeros((), jnp.int32)}

  def step(state, idx, key):
    x = x_train[idx]
    bits = jax.random.bernoulli(key, 0.5, (x.shape[0], a.ssba_bits)).astype(jnp.float32)
    ramp = jnp.clip((state['step'].astype(jnp.float32) - ramp_start) / ramp_steps, 0.0, 1.0)

    def loss_fn(params):
      encoded = encode(enc, {'params': params['encoder']}, x, bits)
      logits = dec.apply({'params': params['decoder']}, quantize(encoded))
      secret = optax.sigmoid_binary_cross_entropy(logits, bits).mean()
      image = jnp.mean(jnp.square(encoded - x))
      return secret + ramp * a.ssba_l2_weight * image, (secret, image, logits, encoded)

    (loss, (secret, image, logits, encoded)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state['params'])
    updates, opt = tx.update(grads, state['opt'], state['params'])
    state = {'params': optax.apply_updates(state['params'], updates), 'opt': opt,
             'step': state['step'] + 1}
    return state, {'loss': loss, 'secret_loss': secret, 'image_loss': image,
                   'bit_acc': bit_accuracy(logits, bits), 'psnr': jnp.mean(psnr(encoded, x))}

  jitted_step = jax.jit(step, donate_argnums=0)
  orders_of = jax.jit(lambda key: batch_order(key, n, batch))

  def run_epoch(state, key):
    k_order, k_steps = jax.random.split(key)
    return run_steps(jitted_step, state, orders_of(k_order), k_steps)

  @jax.jit
  def test_batch(params, x, key):
    bits = jax.random.bernoulli(key, 0.5, (x.shape[0], a.ssba_bits)).astype(jnp.float32)
    encoded = to_8bit(encode(enc, {'params': params['encoder']}, x, bits))
    logits = dec.apply({'params': params['decoder']}, encoded)
    return {'bits': x.shape[0] * bit_accuracy(logits, bits),
            'psnr': jnp.sum(psnr(encoded, x)),
            'linf': jnp.max(jnp.abs(encoded - x))}

  def evaluate(state) -> dict:
    """On the test set, each image with its own random bit string, stored as 8-bit pixels:
    the decoder's bit accuracy, the mean PSNR (dB) and the largest L-inf residual."""
    key = jax.random.key(0x55BA)
    bits = psnr_sum = linf = 0.0
    size = 256
    for i, start in enumerate(range(0, len(x_test), size)):
      out = jax.device_get(test_batch(state['params'], x_test[start:start + size],
                                      jax.random.fold_in(key, i)))
      bits += float(out['bits'])
      psnr_sum += float(out['psnr'])
      linf = max(linf, float(out['linf']))
    m = len(x_test)
    return {'bit_acc_random': bits / m, 'psnr_random': psnr_sum / m, 'linf_random': linf,
            'epochs': a.generator_epochs}

  return GeneratorTrainer(name='ssba', epochs=a.generator_epochs, images_per_epoch=steps * batch,
                          init=init, epoch=lambda s, k, e: run_epoch(s, k), evaluate=evaluate)


def variables_of(state: dict) -> dict:
  """{'encoder': E variables, 'decoder': D variables} of a trained state."""
  return {'encoder': {'params': state['params']['encoder']},
          'decoder': {'params': state['params']['decoder']}}
