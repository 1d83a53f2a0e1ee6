"""Throughput of Algorithm 1's step counting against PGD steps on the same model and batch.

    python benchmarks/step_count.py [--rounds=3] [--reps=3] [--steps=10]

The counter is timed with step size 0 on labels equal to the model's predictions, so no
sample ever flips and the `lax.while_loop` runs exactly `--steps` iterations (plus its
final check): the worst case per batch. It is compared with the jitted PGD-K attack of
the training step (no weight update), rolled or unrolled as `--unroll` says ('auto', the
default, picks per backend). `count/device` is the on-device `lax.while_loop`; `count/host` drives jitted
chunks of 10 unrolled steps from the host (the CPU default). Prints ms per batch, per-step cost relative to one PGD step, and images x steps/s.
"""

import argparse

import jax
import jax.numpy as jnp

from abd_jax.defenses.step_count import CPU_CHUNK, count_steps, finish, init_carry, min_steps_to_flip
from abd_jax.models import create_model
from abd_jax.perturb import attack_logits_fn, make_perturbation
from timing import interleaved_medians

CASES = (('cnn', 1.0, (8, 8, 1), 128), ('resnet18', 0.25, (32, 32, 3), 32))


def bench(model_name, width, shape, batch, rounds, reps, steps, unroll='auto'):
  model = create_model(model_name, 10, width)
  x = jax.random.uniform(jax.random.key(0), (batch, *shape))
  variables = model.init(jax.random.key(2), x[:1], train=False)
  logits_fn = attack_logits_fn(model, variables)
  y = jnp.argmax(logits_fn(x), -1)  # never flips with step 0: exactly `steps` iterations
  hp = {'eps': jnp.float32(8 / 255), 'step_size': jnp.float32(2 / 255)}
  pgd = make_perturbation('linf', steps, unroll=unroll)
  fns = {'pgd': jax.jit(lambda v, xx, yy, k: pgd(attack_logits_fn(model, v), xx, yy, k, hp))}
  fns['count/device'] = jax.jit(lambda v, xx, yy, k: min_steps_to_flip(
      attack_logits_fn(model, v), xx, yy, jnp.float32(0.0), steps))
  advance = jax.jit(lambda v, c, yy: count_steps(attack_logits_fn(model, v), c, yy,
                                                 jnp.float32(0.0), steps, CPU_CHUNK))
  done = jax.jit(lambda v, c, yy: finish(attack_logits_fn(model, v), c, yy, steps))

  def host_driven(v, xx, yy, k):
    carry = init_carry(xx)
    while int(carry[0]) < steps and not bool(jnp.all(carry[3])):
      carry = advance(v, carry, yy)
    return done(v, carry, yy)

  fns['count/host'] = host_driven
  for fn in fns.values():
    jax.block_until_ready(fn(variables, x, y, jax.random.key(3)))
  for name, fn in fns.items():
    if name.startswith('count'):
      assert int(jnp.min(fn(variables, x, y, jax.random.key(3)))) == steps + 1
  calls = {name: (lambda i, fn=fn: fn(variables, x, y, jax.random.key(i)))
           for name, fn in fns.items()}
  medians = interleaved_medians(calls, rounds, reps)
  base = medians['pgd']
  for name in fns:
    m = medians[name]
    print(f'{model_name:<9} w{width:<5} {str(shape):<12} B{batch:<4} {name:<12} {steps} steps '
          f'{1e3 * m:8.1f} ms  {m / base:5.2f}x PGD-{steps}  '
          f'{batch * steps / m:9.0f} image-steps/s', flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--reps', type=int, default=3)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--unroll', default='auto', choices=('auto', 'full', 'none'),
                      help="attack loops: 'auto' (full on CPU, rolled elsewhere), 'full', 'none'")
  args = parser.parse_args()
  print(f'backend={jax.default_backend()} device={jax.devices()[0].device_kind}')
  for case in CASES:
    bench(*case, args.rounds, args.reps, args.steps, args.unroll)


if __name__ == '__main__':
  main()
