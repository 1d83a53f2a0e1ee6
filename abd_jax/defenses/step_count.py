"""The minimum number of signed-gradient steps that flips a sample's prediction.

ICLR'22 seed (000), Algorithm 1: for each training sample (x_i, y_i),

    tau_i = 0;  while argmax f(x_i) = y_i:  x_i <- Clip_[0,1](x_i + beta * sign(grad_x L(f(x_i), y_i)));  tau_i += 1

with no eps-ball (only the [0, 1] clip), y_i the sample's training label (the poisoned
label for dirty-label samples) and L the cross-entropy. A sample the model already
misclassifies has tau = 0. Poisoned samples whose trigger an adversarially trained model
has memorized need many more steps than clean ones (Fig. 5), which the PGD defense
(Algorithm 2) uses to find them.

Batched: every sample of a batch carries its own step counter and "done" flag; the batch
stops when all its samples are done or after `max_steps` steps. On accelerators the loop
is one `lax.while_loop` on the device; on XLA:CPU, where a while loop runs several times
slower, the host drives jitted chunks of unrolled steps (`host_driven`).
Samples still classified as their label after `max_steps` steps are *capped*: their count
is reported as `max_steps + 1` (a score above every finished count) and flagged.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from abd_jax import parallel
from abd_jax.defenses.scoring import map_samples
from abd_jax.perturb import attack_logits_fn
from abd_jax.perturb.base import Array, LogitsFn, ce_sum, clip01


Carry = tuple  # (i: int32 step index, x: [B,H,W,C], steps: int32 [B], done: bool [B])


def init_carry(x: Array, done: Array | None = None) -> Carry:
  done = jnp.zeros(x.shape[:1], bool) if done is None else done
  return jnp.int32(0), x, jnp.zeros(x.shape[:1], jnp.int32), done


def count_steps(logits_fn: LogitsFn, carry: Carry, y: Array, step_size: Array, max_steps: int,
                num: int) -> Carry:
  """`num` unrolled iterations of Algorithm 1's loop on a batch. Each looks at the current
  prediction, retires flipped samples, and moves the others one step (never past
  `max_steps`: the iterations beyond it only look)."""

  def one_step(carry):
    i, xx, steps, done = carry
    (_, logits), g = jax.value_and_grad(
        lambda v: (lambda lg: (ce_sum(lg, y), lg))(logits_fn(v)), has_aux=True)(xx)
    done = done | (jnp.argmax(logits, -1) != y)
    move = ~done & (i < max_steps)
    xx = jnp.where(move[:, None, None, None], clip01(xx + step_size * jnp.sign(g)), xx)
    return i + 1, xx, steps + move.astype(jnp.int32), done

  for _ in range(num):
    carry = one_step(carry)
  return carry


def finish(logits_fn: LogitsFn, carry: Carry, y: Array, max_steps: int) -> Array:
  """The counts once the loop has stopped: the last move is checked here, and samples
  still classified as y are capped at max_steps + 1."""
  _, xx, steps, done = carry
  done = done | (jnp.argmax(logits_fn(xx), -1) != y)
  return jnp.where(done, steps, max_steps + 1)


def min_steps_to_flip(logits_fn: LogitsFn, x: Array, y: Array, step_size: Array,
                      max_steps: int, done: Array | None = None) -> Array:
  """Algorithm 1 on a batch, one `lax.while_loop` on the device that stops when every
  sample has flipped or after `max_steps` steps.

  x: [B,H,W,C] in [0, 1]; y: int [B] labels; step_size: beta (traced scalar); max_steps:
  static cap; done: optional bool [B] of samples to skip (padding; counted 0). Returns
  int32 [B]: the number of steps after which argmax f(x) != y, in 0..max_steps, or
  max_steps + 1 for samples still classified as y after max_steps steps.
  """
  carry = jax.lax.while_loop(
      lambda c: (c[0] < max_steps) & ~jnp.all(c[3]),
      lambda c: count_steps(logits_fn, c, y, step_size, max_steps, 1),
      init_carry(x, done))
  return finish(logits_fn, carry, y, max_steps)


# XLA:CPU runs any while loop's body several times slower than the same ops outside one
# (ResNet-18: 5.6x, benchmarks/README.md), unrolled inside or not. There the loop is driven
# from the host instead: jitted chunks of CPU_CHUNK unrolled steps, one sync per chunk.
CPU_CHUNK = 10


def host_driven(unroll: str) -> bool:
  """Whether `perturb.unroll` asks for host-driven chunks ('auto': on CPU only)."""
  if unroll == 'auto':
    return jax.default_backend() == 'cpu'
  return {'full': True, 'none': False}[unroll]


@dataclasses.dataclass(frozen=True)
class StepCounts:
  """Per-sample results of Algorithm 1 over a dataset."""
  steps: np.ndarray    # int32 [N], 0..max_steps, or max_steps + 1 when capped
  max_steps: int

  @property
  def capped(self) -> np.ndarray:
    return self.steps > self.max_steps


def count_dataset_steps(model, variables: dict, images: np.ndarray, labels: np.ndarray, *,
                        step_size: float, max_steps: int, batch_size: int, mesh,
                        unroll: str = 'auto') -> StepCounts:
  """Algorithm 1 for every sample of `images` (uint8 [N,H,W,C]) with `labels` (int [N]),
  BatchNorm on its running statistics, `batch_size` samples at a time (one compiled
  program per batch shape; the last batch is padded and its padding skipped). `unroll`
  chooses the device loop or host-driven chunks (`host_driven`)."""
  beta = jnp.float32(step_size)
  if not host_driven(unroll):

    def per_batch(variables, x, y, valid, beta):
      logits_fn = attack_logits_fn(model, variables, 'eval')
      return min_steps_to_flip(logits_fn, x, y, beta, max_steps, done=~valid)

    steps = map_samples(per_batch, variables, images, labels, batch_size, mesh, beta)
    return StepCounts(steps.astype(np.int32), max_steps)

  sharding = parallel.batch_sharded(mesh)
  logits_fn = lambda variables, x: model.apply(variables, x, train=False)

  @jax.jit
  def start(images, labels, valid):
    x = jax.lax.with_sharding_constraint(images.astype(jnp.float32) / 255.0, sharding)
    return init_carry(x, ~valid), labels

  @jax.jit
  def advance(variables, carry, y, beta):
    return count_steps(lambda v: logits_fn(variables, v), carry, y, beta, max_steps, CPU_CHUNK)

  @jax.jit
  def done(variables, carry, y):
    return finish(lambda v: logits_fn(variables, v), carry, y, max_steps)

  n, out = len(labels), []
  variables, beta = parallel.put_replicated((variables, beta), mesh)
  for lo in range(0, n, batch_size):
    chunk_images, chunk_labels = images[lo:lo + batch_size], labels[lo:lo + batch_size]
    valid = np.arange(batch_size) < len(chunk_labels)
    pad = batch_size - len(chunk_labels)
    carry, y = start(*parallel.put((np.pad(chunk_images, ((0, pad), (0, 0), (0, 0), (0, 0))),
                                    np.pad(chunk_labels.astype(np.int32), (0, pad)), valid),
                                   sharding))
    while True:  # one sync per chunk
      step, all_done = parallel.fetch((carry[0], jnp.all(carry[3])))
      if step >= max_steps or all_done:
        break
      carry = advance(variables, carry, y, beta)
    out.append(parallel.fetch(done(variables, carry, y))[:len(chunk_labels)])
  return StepCounts(np.concatenate(out).astype(np.int32), max_steps)
