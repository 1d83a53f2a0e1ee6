"""Time poisoning a CIFAR-10-sized training set (50,000 x 32x32x3 uint8, synthetic) and
building its triggered test set (10,000 images), per attack.

    python benchmarks/poison.py [--attacks=badnets,blended,sig,wanet] [--repeats=3]

Prints seconds per attack (median over repeats; the first, compiling run is reported
separately).
"""

import argparse
import statistics
import tempfile
import time

import jax

from abd_jax import config as config_lib
from abd_jax.data import load_dataset
from abd_jax.surrogate import poison_run


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--attacks', default='badnets,blended,sig,wanet')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()

  c = config_lib.base_config()
  c.dataset.update(name='synthetic', num_train=50_000, num_test=10_000, image_size=32,
                   channels=3, num_classes=10)
  data = load_dataset(c.dataset, 0)
  print(f'backend={jax.default_backend()} devices={jax.device_count()} '
        f'train={data.x_train.shape} test={data.x_test.shape}')
  print(f'{"attack":<10} {"poisoned":>8} {"first (s)":>10} {"median (s)":>11}')
  with tempfile.TemporaryDirectory() as workdir:
    for name in args.attacks.split(','):
      c = config_lib.apply_attack_defaults(c, name)
      config_lib.validate(c)
      times = []
      for _ in range(args.repeats + 1):
        t0 = time.perf_counter()
        p = poison_run(c, data, workdir)
        times.append(time.perf_counter() - t0)
      print(f'{name:<10} {p.manifest["num_poisoned"]:>8} {times[0]:>10.2f} '
            f'{statistics.median(times[1:]):>11.2f}')


if __name__ == '__main__':
  main()
