"""Cost of one inner maximization per regime, relative to PGD-10 on the same model and batch.

    python benchmarks/perturb_cost.py [--rounds=5] [--reps=5]

Times the jitted attack alone (no weight update) for linf (PGD), spatial, relaxed_linf and
cat, 10 steps each, interleaving the regimes so machine load hits them alike, and prints
the median and the ratio to PGD-10. Targets: spatial <= ~1.3x PGD; cat ~ spatial + PGD.
"""

import argparse

import jax
import jax.numpy as jnp

from abd_jax.models import create_model
from abd_jax.perturb import attack_logits_fn, make_perturbation
from timing import interleaved_medians

REGIMES = ('linf', 'spatial', 'relaxed_linf', 'cat')
HP = dict(eps=8 / 255, step_size=2 / 255, eps_spatial=0.05, step_size_spatial=0.0125, beta=0.8)
CASES = (('cnn', 1.0, (8, 8, 1), 128), ('resnet18', 0.25, (32, 32, 3), 32))


def bench(model_name, width, shape, batch, rounds, reps, steps, unroll='auto'):
  model = create_model(model_name, 10, width)
  x = jax.random.uniform(jax.random.key(0), (batch, *shape))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  variables = model.init(jax.random.key(2), x[:1], train=False)
  hp = {k: jnp.float32(v) for k, v in HP.items()}
  fns = {}
  for name in REGIMES:
    attack = make_perturbation(name, steps, unroll=unroll)
    fns[name] = jax.jit(lambda v, xx, yy, k, h, attack=attack:
                        attack(attack_logits_fn(model, v), xx, yy, k, h))
    fns[name](variables, x, y, jax.random.key(3), hp).block_until_ready()  # compile
  calls = {name: (lambda i, fn=fn: fn(variables, x, y, jax.random.key(i), hp))
           for name, fn in fns.items()}
  medians = interleaved_medians(calls, rounds, reps)
  base = medians['linf']
  for name in REGIMES:
    m = medians[name]
    print(f'{model_name:<9} w{width:<5} {str(shape):<12} B{batch:<4} {name:<13} '
          f'{1e3 * m:8.1f} ms  {m / base:5.2f}x PGD-{steps}', flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--reps', type=int, default=5)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--unroll', default='auto', choices=('auto', 'full', 'none'),
                      help="attack loops: 'auto' (full on CPU, rolled elsewhere), 'full', 'none'")
  args = parser.parse_args()
  print(f'backend={jax.default_backend()} device={jax.devices()[0].device_kind}')
  for case in CASES:
    bench(*case, args.rounds, args.reps, args.steps, args.unroll)


if __name__ == '__main__':
  main()
