"""The placement and read-back rules (`abd_jax.parallel`) on 4 fake CPU devices: every
array reaches a mesh program through `put`, whatever it was before (the defenses once
crashed on variables restored to one device), and comes back whole through `fetch`."""

import json
import subprocess
import sys

from cli import REPO
from conftest import fake_devices_env

_SCRIPT = r'''
import json
import flax.linen as nn
import jax, jax.numpy as jnp, numpy as np
from abd_jax import evaluate, parallel
from abd_jax.defenses.scoring import map_samples
from abd_jax.perturb import make_perturbation

mesh = parallel.make_mesh()
out = {'devices': jax.device_count()}
one_device = jax.device_put(np.arange(6.0, dtype=np.float32), jax.devices()[1])  # committed
placed = parallel.put_replicated(one_device, mesh)
out['moved'] = placed.sharding.is_equivalent_to(parallel.replicated(mesh), 1)
out['kept'] = parallel.put_replicated(placed, mesh) is placed
key = parallel.put_replicated(jax.random.key(3), mesh)
out['key'] = bool(jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                  and np.array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.key(3))))
split = parallel.put(np.arange(8, dtype=np.int32), parallel.batch_sharded(mesh))
out['fetched'] = parallel.fetch({'a': split})['a'].tolist()
out['agree'] = parallel.agree([True, False])
out['fitted'] = [parallel.fitted_batch(64, 14), parallel.fitted_batch(64, 3), parallel.fitted_batch(16, 100)]


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.BatchNorm(use_running_average=not train)(x.reshape(x.shape[0], -1))
    return nn.Dense(10)(x)


model = Net()
variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
variables = jax.device_put(variables, jax.devices()[0])  # as a one-device restore leaves them
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8)
labels = rng.integers(0, 10, 30).astype(np.int32)
logits = map_samples(lambda v, x, y, valid: model.apply(v, x), variables, images, labels, 8, mesh)
out['scored'] = list(logits.shape)
ev = evaluate.Evaluator(model, make_perturbation('none'), 8, mesh)
out['accuracy'] = ev.accuracy(variables, evaluate.make_eval_set(images, labels, 8, mesh))
print(json.dumps(out))
'''


def test_put_moves_keeps_and_fetch_gathers_on_4_devices():
  proc = subprocess.run([sys.executable, '-c', _SCRIPT], cwd=REPO, env=fake_devices_env(4),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['devices'] == 4
  assert out['moved'] and out['kept'] and out['key']
  assert out['fetched'] == list(range(8))
  assert out['agree'] == [True, False]  # one process: its own view
  assert out['fitted'] == [12, 4, 16]
  assert out['scored'] == [30, 10]
  assert 0.0 <= out['accuracy'] <= 1.0
