"""Training the Input-Aware Backdoor's generators (Nguyen & Tran, NeurIPS 2020).

Two phases, as the authors' train.py:

1. Mask generator M, `iab_mask_epochs` epochs (the original: 25), alone:

       L_M = lambda_norm * mean(relu(m(x1) - density))
           + lambda_div * mean(d(x1, x2) / d(m(x1), m(x2)))

   m = threshold(M(x)), d(a, b) = sqrt(mean((a - b)^2)) per pair, x1 and x2 two independent
   batches: sparse masks (density 0.032) that differ between images.

2. Pattern generator G and a classifier C, `generator_epochs` epochs, M frozen. Of each
   batch, the first `iab_attack_rate` get their own trigger and the target label, the next
   `iab_cross_rate` the trigger of another image and keep their label (the cross-trigger
   mode: a trigger works only on its own image), the rest stay clean:

       x_bd    = x1 + (p(x1) - x1) * m(x1)          -> attack target
       x_cross = x1 + (p(x2) - x1) * m(x2)          -> true label
       L = CE(C([x_bd, x_cross, x_clean]), y) + lambda_div * mean(d(x1, x2) / d(p(x1), p(x2)))

   p = tanh(G(x)) / 2 + 0.5. C takes SGD (momentum 0.9, weight decay 5e-4) and G Adam
   (betas 0.5, 0.9), both at `generator_lr` (the original 0.01), decayed 10x at the
   original's milestones as fractions of the phase (C at 1/6..4/6, G at 2/6..5/6 of its
   600 epochs; M at 10 and 20 of 25). Images are the library's [0, 1] pixels, not the
   original's normalized ones; the dataset's crop / flip augment the classifier's batch.

The classifier (the configured model) only serves the generator's training, as in the
paper's data-poisoning use (A-ABL, after ABL's code: a trained generator stamps the
poisoned samples, and the victim model is trained afresh on them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from abd_jax.data import Dataset
from abd_jax.data.augment import augment
from abd_jax.models import create_model
from abd_jax.models.trigger_nets import (EncoderDecoder, generator_depth, iab_mask, iab_pattern,
                                         iab_stamp)
from abd_jax.generators.runner import GeneratorTrainer, batch_order, run_steps

Array = jax.Array
EPSILON = 1e-7
MAX_DEPTH = 3
WEIGHT_DECAY = 5e-4


def networks(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> dict:
  """{'pattern': G, 'mask': M} for images (H, W, C) and the `attack` block `cfg`."""
  h, w, c = image_shape
  depth = generator_depth(h, w, MAX_DEPTH)
  return {'pattern': EncoderDecoder(c, cfg.generator_width, depth),
          'mask': EncoderDecoder(1, cfg.generator_width, depth)}


def pair_distance(a: Array, b: Array) -> Array:
  """d(a, b) = sqrt(mean((a - b)^2)) over all but the batch axis: [B,...] x [B,...] -> [B].

  A 1e-12 under the root keeps the gradient finite when a pair is identical (the same
  image drawn in both batches), where sqrt's derivative is infinite."""
  return jnp.sqrt(jnp.mean(jnp.square(a - b), axis=tuple(range(1, a.ndim))) + 1e-12)


def diversity_loss(x1: Array, x2: Array, out1: Array, out2: Array) -> Array:
  """mean(d(x1, x2) / (d(out1, out2) + 1e-7)): large when different images get alike
  outputs (the paper's diversity loss; out = patterns, or masks in the mask phase)."""
  return jnp.mean(pair_distance(x1, x2) / (pair_distance(out1, out2) + EPSILON))


def milestone_schedule(lr: float, steps: int, fractions: tuple[float, ...]) -> optax.Schedule:
  """lr / 10 at each fraction of `steps` (the original's MultiStepLR, gamma 0.1)."""
  return optax.piecewise_constant_schedule(
      lr, {max(1, int(round(f * steps))): 0.1 for f in fractions})


def make_trainer(config: ml_collections.ConfigDict, data: Dataset) -> GeneratorTrainer:
  """The two-phase trainer of `config.attack` (name 'iab') on the clean `data`."""
  a, batch = config.attack, config.train.batch_size
  nets = networks(a, data.image_shape)
  gen_p, gen_m = nets['pattern'], nets['mask']
  clf = create_model(config.model.name, data.num_classes, config.model.width, config.model.dtype,
                     config.model.norm)
  x_train = jnp.asarray(data.x_train, jnp.float32) / 255.0
  y_train = jnp.asarray(data.y_train)
  x_test = jnp.asarray(data.x_test, jnp.float32) / 255.0
  y_test = jnp.asarray(data.y_test)
  n, k = len(data.y_train), data.num_classes
  steps = n // batch
  n_bd = int(a.iab_attack_rate * batch)
  n_cross = int(a.iab_cross_rate * batch)
  mask_epochs, main_epochs = a.iab_mask_epochs, a.generator_epochs
  crop, flip = config.dataset.crop_padding, config.dataset.flip

  tx_m = optax.adam(milestone_schedule(a.generator_lr, mask_epochs * steps, (0.4, 0.8)), 0.5, 0.9)
  tx_g = optax.adam(milestone_schedule(a.generator_lr, main_epochs * steps,
                                       (2 / 6, 3 / 6, 4 / 6, 5 / 6)), 0.5, 0.9)
  tx_c = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(
      milestone_schedule(a.generator_lr, main_epochs * steps, (1 / 6, 2 / 6, 3 / 6, 4 / 6)),
      momentum=0.9))

  def targets(y: Array) -> Array:
    return (y + 1) % k if a.all_to_all else jnp.full_like(y, a.target)

  def init(key: Array) -> dict:
    km, kg, kc = jax.random.split(key, 3)
    x = jnp.zeros((1, *data.image_shape), jnp.float32)
    m, g = gen_m.init(km, x)['params'], gen_p.init(kg, x)['params']
    c = clf.init(kc, x, train=False)
    return {'mask': m, 'mask_opt': tx_m.init(m), 'pattern': g, 'pattern_opt': tx_g.init(g),
            'clf': c['params'], 'clf_stats': c.get('batch_stats', {}),
            'clf_opt': tx_c.init(c['params'])}

  def mask_of(params, x):
    return iab_mask(gen_m.apply({'params': params}, x))

  def pattern_of(params, x):
    return iab_pattern(gen_p.apply({'params': params}, x))

  def mask_step(state, idx, key):
    del key
    x1, x2 = x_train[idx[0]], x_train[idx[1]]

    def loss_fn(params):
      m1, m2 = mask_of(params, x1), mask_of(params, x2)
      norm = jnp.mean(jax.nn.relu(m1 - a.iab_mask_density))
      div = diversity_loss(x1, x2, m1, m2)
      return a.iab_lambda_norm * norm + a.iab_lambda_div * div, (norm, div, jnp.mean(m1 > 0.5))

    (loss, (norm, div, density)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['mask'])
    updates, opt = tx_m.update(grads, state['mask_opt'], state['mask'])
    state = {**state, 'mask': optax.apply_updates(state['mask'], updates), 'mask_opt': opt}
    return state, {'mask_loss': loss, 'norm_loss': norm, 'div_loss': div, 'mask_density': density}

  def main_step(state, idx, key):
    x1, y1, x2 = x_train[idx[0]], y_train[idx[0]], x_train[idx[1]]
    m1, m2 = mask_of(state['mask'], x1[:n_bd]), mask_of(state['mask'], x2[:n_cross])

    def loss_fn(params):
      p1 = pattern_of(params['pattern'], x1[:n_bd])
      p2 = pattern_of(params['pattern'], x2[:max(n_bd, n_cross)])
      bd = iab_stamp(x1[:n_bd], p1, m1)
      cross = iab_stamp(x1[n_bd:n_bd + n_cross], p2[:n_cross], m2)
      inputs = augment(key, jnp.concatenate([bd, cross, x1[n_bd + n_cross:]]), crop, flip)
      labels = jnp.concatenate([targets(y1[:n_bd]), y1[n_bd:]])
      logits, updates = clf.apply({'params': params['clf'], 'batch_stats': state['clf_stats']},
                                  inputs, train=True, mutable=['batch_stats'])
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      div = diversity_loss(x1[:n_bd], x2[:n_bd], p1, p2[:n_bd])
      correct = jnp.argmax(logits, -1) == labels
      aux = (ce, div, updates.get('batch_stats', {}), correct)
      return ce + a.iab_lambda_div * div, aux

    params = {'pattern': state['pattern'], 'clf': state['clf']}
    (loss, (ce, div, stats, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    up_g, opt_g = tx_g.update(grads['pattern'], state['pattern_opt'], state['pattern'])
    up_c, opt_c = tx_c.update(grads['clf'], state['clf_opt'], state['clf'])
    state = {**state, 'pattern': optax.apply_updates(state['pattern'], up_g), 'pattern_opt': opt_g,
             'clf': optax.apply_updates(state['clf'], up_c), 'clf_opt': opt_c, 'clf_stats': stats}
    metrics = {'loss': loss, 'ce_loss': ce, 'div_loss': div,
               'bd_acc': jnp.mean(correct[:n_bd]),
               'cross_acc': jnp.mean(correct[n_bd:n_bd + n_cross]) if n_cross else jnp.float32(0),
               'clean_acc': jnp.mean(correct[n_bd + n_cross:])}
    return state, metrics

  steps_of = {True: jax.jit(mask_step, donate_argnums=0),
              False: jax.jit(main_step, donate_argnums=0)}

  @jax.jit
  def orders_of(key):
    k1, k2 = jax.random.split(key)
    return jnp.stack([batch_order(k1, n, batch), batch_order(k2, n, batch)], axis=1)

  def epoch(state, key, e: int):
    k_order, k_steps = jax.random.split(key)
    return run_steps(steps_of[e < mask_epochs], state, orders_of(k_order), k_steps)

  @jax.jit
  def test_batch(state, x, y, x_other):
    variables = {'params': state['clf'], 'batch_stats': state['clf_stats']}
    predict = lambda images: jnp.argmax(clf.apply(variables, images, train=False), -1)
    m, p = mask_of(state['mask'], x), pattern_of(state['pattern'], x)
    m2, p2 = mask_of(state['mask'], x_other), pattern_of(state['pattern'], x_other)
    keep = (y != a.target) | a.all_to_all  # the ASR counts non-target images
    hit = predict(iab_stamp(x, p, m)) == targets(y)
    return {'clean': jnp.sum(predict(x) == y), 'bd': jnp.sum(hit & keep), 'bd_count': jnp.sum(keep),
            'cross': jnp.sum(predict(iab_stamp(x, p2, m2)) == y),
            'density': jnp.sum(jnp.mean(m > 0.5, axis=(1, 2, 3)))}

  def evaluate(state) -> dict:
    """The classifier's clean accuracy, attack success and cross-trigger accuracy on the
    test set (another test image's trigger; the paper's three numbers), and the masks'
    mean density (fraction of pixels > 0.5)."""
    totals: dict[str, float] = {}
    size = 256
    for start in range(0, len(y_test), size):
      x, y = x_test[start:start + size], y_test[start:start + size]
      out = jax.device_get(test_batch(state, x, y, jnp.roll(x, 1, axis=0)))
      for key, v in out.items():
        totals[key] = totals.get(key, 0) + float(v)
    m = len(y_test)
    return {'classifier_clean_acc': totals['clean'] / m,
            'classifier_asr': totals['bd'] / max(totals['bd_count'], 1),
            'classifier_cross_acc': totals['cross'] / m,
            'mask_density': totals['density'] / m,
            'epochs': mask_epochs + main_epochs}

  return GeneratorTrainer(
      name='iab', epochs=mask_epochs + main_epochs, images_per_epoch=steps * batch,
      init=init, epoch=epoch, evaluate=evaluate,
      phase=lambda e: 'mask' if e < mask_epochs else 'pattern')


def variables_of(state: dict) -> dict:
  """{'pattern': G variables, 'mask': M variables} of a trained state."""
  return {'pattern': {'params': state['pattern']}, 'mask': {'params': state['mask']}}
