"""Algorithm 1 of the ICLR'22 seed: minimum signed-gradient steps to flip a prediction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fake_devices_env

from abd_jax import parallel
from abd_jax.defenses.step_count import (count_dataset_steps, count_steps, finish, init_carry,
                                         min_steps_to_flip)
from abd_jax.models import create_model
from abd_jax.perturb.base import clip01, input_grad


def naive_steps(logits_fn, x, y, beta, max_steps):
  """Algorithm 1 written literally: one sample at a time, a Python while loop."""
  out = []
  for xi, yi in zip(x, y):
    xi, yi, tau = xi[None], yi[None], 0
    while int(jnp.argmax(logits_fn(xi), -1)[0]) == int(yi[0]):
      if tau == max_steps:
        tau = max_steps + 1
        break
      xi = clip01(xi + beta * jnp.sign(input_grad(logits_fn, xi, yi)))
      tau += 1
    out.append(tau)
  return np.array(out)


@pytest.mark.parametrize('chunk', [0, 1, 4])
def test_batched_counts_equal_the_one_sample_reference(trained_digits_model, chunk):
  """chunk 0: the device while loop; 1, 4: host-driven chunks of that many steps."""
  logits_fn, x, y = trained_digits_model
  x, y = x[:48], y[:48]
  beta, cap = 0.02, 6
  if chunk == 0:
    count = jax.jit(min_steps_to_flip, static_argnums=(0, 4))
    batched = np.asarray(count(logits_fn, x, y, jnp.float32(beta), cap))
  else:
    advance = jax.jit(count_steps, static_argnums=(0, 4, 5))
    carry = init_carry(x)
    while int(carry[0]) < cap and not bool(jnp.all(carry[3])):
      carry = advance(logits_fn, carry, y, jnp.float32(beta), cap, chunk)
    batched = np.asarray(finish(logits_fn, carry, y, cap))
  reference = naive_steps(logits_fn, x, y, beta, cap)
  np.testing.assert_array_equal(batched, reference)
  # The test means something: counts spread over several values, some samples capped.
  assert len(np.unique(batched)) >= 4, batched
  assert (batched == cap + 1).any() and (batched < cap + 1).any()


def test_misclassified_samples_count_zero_and_padding_is_skipped(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  x, y = x[:16], y[:16]
  wrong = (y + 1) % 10  # labels the model does not predict
  steps = min_steps_to_flip(logits_fn, x, wrong, jnp.float32(0.02), 10)
  np.testing.assert_array_equal(np.asarray(steps), 0)
  done = jnp.arange(16) >= 8
  steps = np.asarray(min_steps_to_flip(logits_fn, x, y, jnp.float32(0.02), 10, done=done))
  np.testing.assert_array_equal(steps[8:], 0)
  assert (steps[:8] > 0).all()


def test_larger_step_needs_no_more_steps(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  small = np.asarray(min_steps_to_flip(logits_fn, x[:64], y[:64], jnp.float32(0.01), 40))
  large = np.asarray(min_steps_to_flip(logits_fn, x[:64], y[:64], jnp.float32(0.04), 40))
  assert large.mean() < small.mean()


@pytest.mark.parametrize('unroll', ['none', 'full'])
def test_dataset_counts_match_per_batch_counts_with_padding(unroll):
  model = create_model('cnn', 10, 0.5)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (37, 8, 8, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, 37).astype(np.int32)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  mesh = parallel.make_mesh()
  counts = count_dataset_steps(model, variables, images, labels, step_size=0.05, max_steps=6,
                               batch_size=16, mesh=mesh, unroll=unroll)
  assert counts.steps.shape == (37,) and counts.steps.dtype == np.int32
  logits_fn = lambda v: model.apply(variables, v, train=False)
  x = jnp.asarray(images, jnp.float32) / 255.0
  direct = np.asarray(min_steps_to_flip(logits_fn, x, jnp.asarray(labels), jnp.float32(0.05), 6))
  np.testing.assert_array_equal(counts.steps, direct)
  np.testing.assert_array_equal(counts.capped, direct == 7)
  assert len(np.unique(direct)) >= 3, direct  # not a degenerate case


_SHARDED_SCRIPT = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from abd_jax import parallel
from abd_jax.defenses.scoring import penultimate_features
from abd_jax.defenses.step_count import count_dataset_steps
from abd_jax.models import create_model
model = create_model('cnn', 10, 0.5)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (70, 8, 8, 1), dtype=np.uint8)
labels = rng.integers(0, 10, 70).astype(np.int32)
variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
mesh = parallel.make_mesh()
out = {'devices': jax.device_count()}
for unroll in ('none', 'full'):
  out[unroll] = count_dataset_steps(model, variables, images, labels, step_size=0.05, max_steps=8,
                                    batch_size=16, mesh=mesh, unroll=unroll).steps.tolist()
out['features'] = penultimate_features(model, variables, images, labels, 16, mesh).tolist()
print(json.dumps(out))
'''


@pytest.mark.slow  # several devices: a subprocess with 4 fake ones
def test_counts_and_features_on_4_fake_devices_match_one_device():
  """The batch is split over the mesh's data axis; every sample is computed on its own
  (BatchNorm on running statistics), so the results agree up to float reduction order."""
  import json, os, subprocess, sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  results = {}
  for n in (1, 4):
    env = fake_devices_env(n)
    proc = subprocess.run([sys.executable, '-c', _SHARDED_SCRIPT], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
  one, four = results[1], results[4]
  assert (one['devices'], four['devices']) == (1, 4)
  for unroll in ('none', 'full'):
    a, b = np.array(one[unroll]), np.array(four[unroll])
    assert (a == b).mean() >= 0.97, (unroll, a, b)
  np.testing.assert_array_equal(one['none'], one['full'])
  np.testing.assert_allclose(four['features'], one['features'], rtol=1e-4, atol=1e-5)
