"""The training loop in-process: schedule, divergence handling, data-parallel equality."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import fake_devices_env

from abd_jax import config as config_lib, parallel
from abd_jax.data import load_dataset
from abd_jax.train import loop, programs
from abd_jax.train.optim import learning_rate_schedule, make_optimizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**train):
  c = config_lib.apply_digits_scale(config_lib.base_config())
  c.perturb.name = 'none'
  c.train.update(epochs=3, **train)
  c.eval.update(steps=2, robust=False)
  c.log.progress = False
  return c


def test_piecewise_constant_schedule_in_epochs():
  c = config_lib.base_config().train
  c.update(lr=0.1, milestones=(2, 4), lr_decay=0.1)
  sched = learning_rate_schedule(c, steps_per_epoch=10)
  got = [float(sched(s)) for s in (0, 19, 20, 39, 40, 100)]
  np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_sgd_matches_torch_semantics():
  """torch.optim.SGD: g += wd·w; buf = m·buf + g; w -= lr·buf."""
  c = config_lib.base_config().train
  c.update(lr=0.1, momentum=0.9, weight_decay=0.5, milestones=())
  tx = make_optimizer(c, 1)
  w, g = jnp.array([1.0]), jnp.array([2.0])
  state = tx.init(w)
  buf = 0.0
  w_ref = 1.0
  for _ in range(3):
    upd, state = tx.update(g, state, w)
    w = optax.apply_updates(w, upd)
    buf = 0.9 * buf + (2.0 + 0.5 * w_ref)
    w_ref -= 0.1 * buf
    np.testing.assert_allclose(float(w[0]), w_ref, rtol=1e-6)


def test_adam_is_available():
  c = config_lib.base_config().train
  c.update(optimizer='adam', lr=1e-3, weight_decay=0.0)
  tx = make_optimizer(c, 1)
  upd, _ = tx.update(jnp.ones(3), tx.init(jnp.zeros(3)), jnp.zeros(3))
  np.testing.assert_allclose(upd, -1e-3 * jnp.ones(3), rtol=1e-4)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  """Poison the loss from epoch 2 on: the run stops with a clear error, epoch 1 is kept."""
  real = programs.make_train_step

  def exploding(*args, **kwargs):
    step = real(*args, **kwargs)

    def wrapped(state, metrics, images, labels, order, index, key, hp):
      spe = images.shape[0] // kwargs['batch_size']
      state, metrics = step(state, metrics, images, labels, order, index, key, hp)
      blow = jnp.where(state.step > spe, jnp.nan, 1.0)
      return state, dict(metrics, loss_sum=metrics['loss_sum'] * blow)

    return wrapped

  monkeypatch.setattr(programs, 'make_train_step', exploding)
  programs.clear_cache()  # build the step anew, with the patch
  c = tiny_config()
  try:
    with pytest.raises(loop.TrainingDivergedError, match=r'became nan in epoch 2.*epoch 1\) is kept'):
      loop.train_and_evaluate(c, load_dataset(c.dataset, c.seed), str(tmp_path))
  finally:
    programs.clear_cache()  # no later test may get the exploding step
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']


def test_same_seed_same_results_different_seed_differs(tmp_path):
  c = tiny_config()
  c.train.epochs = 1
  data = load_dataset(c.dataset, c.seed)
  a = loop.train_and_evaluate(c, data, str(tmp_path / 'a'))
  b = loop.train_and_evaluate(c, data, str(tmp_path / 'b'))
  c.seed = 1
  d = loop.train_and_evaluate(c, data, str(tmp_path / 'c'))
  assert a == b
  assert a['train_loss'] != d['train_loss']


def test_every_step_of_a_phase_runs_the_same_compiled_program(tmp_path):
  """The step's inputs reach it placed on the mesh every time (`parallel.put`). A fresh
  epoch's metrics or a just-initialized state left unplaced gave the first step of every
  epoch other input shardings, so the run compiled its costliest program twice."""
  c = tiny_config()
  c.train.epochs = 2
  c.perturb.update(name='linf', steps=1)
  data = load_dataset(c.dataset, c.seed)
  loop.train_and_evaluate(c, data, str(tmp_path / 'run'))
  p = programs.get_programs(c, len(data.y_train), data.num_classes, data.image_shape,
                            parallel.make_mesh())
  assert p.step._cache_size() == 1  # jax's count of the jitted step's compiled variants


_DP_SCRIPT = r'''
import json, sys
import jax
from abd_jax import config as config_lib
from abd_jax.data import load_dataset
from abd_jax.train import loop
c = config_lib.apply_digits_scale(config_lib.base_config())
c.train.update(epochs=2, batch_size=64)
c.perturb.update(name=sys.argv[2], steps=2)
c.eval.update(steps=3, batch_size=120)
c.log.progress = False
out = loop.train_and_evaluate(c, load_dataset(c.dataset, 0), sys.argv[1])
print(json.dumps(dict(out, devices=jax.device_count())))
'''


@pytest.mark.slow
@pytest.mark.parametrize('perturb', ['none', 'linf'])
def test_data_parallel_on_8_devices_matches_one_device(tmp_path, perturb):
  """Global BatchNorm makes 8 devices compute the 1-device step up to reduction order.
  SGD amplifies that rounding over the 44 steps (measured with jax 0.10.2: 0.3% on the
  mean training loss of standard training), and sign-gradient attacks amplify it further
  (sign of a ~0 gradient), so AT runs get a looser accuracy tolerance."""
  results = {}
  for n in (1, 8):
    env = fake_devices_env(n)
    proc = subprocess.run([sys.executable, '-c', _DP_SCRIPT, str(tmp_path / str(n)), perturb], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
  one, eight = results[1], results[8]
  assert (one['devices'], eight['devices']) == (1, 8)
  np.testing.assert_allclose(eight['train_loss'], one['train_loss'], rtol=1e-2)
  tolerance = 0.01 if perturb == 'none' else 0.06
  for key in ('clean_acc', 'robust_acc', 'train_acc'):
    assert abs(eight[key] - one[key]) <= tolerance, (key, one, eight)
