"""FLOP accounting (abd_jax.models.flops) and the training-step benchmark's bookkeeping:
the analytic count against XLA's CPU count, and a backend whose cost analysis gives
nothing (XLA:GPU returns None for some programs)."""

import os
import sys

import jax
import jax.numpy as jnp
import pytest

from abd_jax.models import create_model
from abd_jax.models.flops import adversarial_training_flops, forward_flops
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import train_step  # noqa: E402


def xla_cpu_flops(fn, *args) -> float:
  return train_step.cost_flops(jax.jit(fn).lower(*args).compile().cost_analysis())


@pytest.mark.parametrize('name,shape', [('cnn', (8, 8, 1)), ('resnet18', (32, 32, 3)),
                                        ('vgg16', (32, 32, 3))])
def test_forward_flops_match_xla_cpu(name, shape):
  model = create_model(name, 10)
  x = jnp.zeros((2, *shape))
  variables = model.init(jax.random.key(0), x[:1], train=False)
  xla = xla_cpu_flops(lambda v, x: model.apply(v, x, train=False), variables, x) / 2
  analytic = forward_flops(model, shape)
  assert analytic == pytest.approx(xla, rel=0.01)
  if name == 'resnet18':  # the well-known ~0.56 GMAC of CIFAR ResNet-18, minus padding taps
    assert 0.95e9 < analytic < 0.98e9


def test_forward_flops_scale_with_width_and_train_mode():
  narrow = forward_flops(create_model('resnet18', 10, width=0.5), (32, 32, 3))
  full = forward_flops(create_model('resnet18', 10), (32, 32, 3))
  assert narrow == pytest.approx(full / 4, rel=0.05)  # conv FLOPs go with C_in * C_out
  # Train-mode BatchNorm adds the batch statistics: a little more elementwise work.
  assert full < forward_flops(create_model('resnet18', 10), (32, 32, 3), train=True) < full * 1.01


def test_step_flops_match_xla_cpu_count_of_the_unrolled_step():
  args = train_step.parse_args(['--model=cnn', '--batch_size=8', '--attack_steps=2',
                                '--unroll=full'])
  step = train_step.JaxPGDStep(args)
  xla = train_step.cost_flops(jax.jit(step.fn).lower(*step._args(0)).cost_analysis())
  forward, analytic = step.analytic_step_flops()
  assert analytic == pytest.approx(adversarial_training_flops(forward, 2) * 8)
  assert analytic == pytest.approx(xla, rel=0.01)


@pytest.mark.parametrize('cost,expected', [
    (None, None), ({}, None), ([], None), ([None], None), ({'flops': 3.0}, 3.0),
    ([{'flops': 1.0}, {'flops': 2.5}, {}], 3.5)])
def test_cost_flops_handles_missing_cost_analysis(cost, expected):
  assert train_step.cost_flops(cost) == expected


def test_benchmark_runs_every_unroll_when_the_backend_gives_no_cost_analysis(monkeypatch, capsys):
  # What XLA:GPU does: the compiled (and lowered) programs report no cost analysis.
  monkeypatch.setattr(jax.stages.Compiled, 'cost_analysis', lambda self: None)
  monkeypatch.setattr(jax.stages.Lowered, 'cost_analysis', lambda self: None)
  results = train_step.main(['--model=cnn', '--batch_size=8', '--attack_steps=2', '--steps=2',
                             '--timed=1', '--unroll=full,none,auto', '--peak_tflops=1'])
  assert [r['unroll'] for r in results] == ['full', 'none', 'auto=full']
  forward = forward_flops(create_model('cnn', 10), (8, 8, 1))
  for r in results:
    assert r['xla_gflop_step'] is None
    assert r['analytic_gflop_step'] == pytest.approx(7 * forward * 8 / 1e9)
    assert r['ceiling_fraction'] == pytest.approx(
        r['analytic_gflop_step'] / r['jax_step_s'] / 1e3)  # peak 1 TFLOP/s
  out = capsys.readouterr().out
  assert 'the backend gave no cost analysis' in out


def test_unroll_list_rejects_unknown_settings(capsys):
  with pytest.raises(SystemExit):
    train_step.parse_args(['--unroll=full,fast'])
  assert "'full,fast' is not a comma-separated list of auto, full, none" in capsys.readouterr().err


@pytest.mark.parametrize('backend,kind,dtype,expected', [
    ('gpu', 'NVIDIA H100 80GB HBM3', 'bfloat16', 989.4),
    ('gpu', 'NVIDIA H100 PCIe', 'float32', 378.0),
    ('gpu', 'NVIDIA H200 NVL', 'bfloat16', 835.5),
    ('tpu', 'TPU v5 lite', 'float32', 197.0),
    ('tpu', 'TPU v4', 'bfloat16', 275.0),
    ('gpu', 'NVIDIA A10', 'float32', 1.25),  # unknown: a measured matmul
    ('cpu', 'cpu', 'float32', 1.25)])
def test_peak_from_datasheet_or_measured(monkeypatch, backend, kind, dtype, expected):
  device = type('Device', (), {'device_kind': kind})()
  monkeypatch.setattr(train_step.jax, 'default_backend', lambda: backend)
  monkeypatch.setattr(train_step.jax, 'devices', lambda: [device])
  monkeypatch.setattr(train_step, 'measure_matmul_tflops', lambda dtype: 1.25)
  peak, source = train_step.peak_tflops(dtype)
  assert peak == expected
  assert ('measured' in source) == (expected == 1.25)
  assert train_step.peak_tflops(dtype, override=7.0) == (7.0, '--peak_tflops')


def test_memory_benchmark_finds_the_largest_batch_under_a_limit():
  import memory
  limit_gib = 0.05
  [r] = memory.main(['--models=cnn', f'--memory_gib={limit_gib}', '--fit_batches=32,64',
                     '--multiple=32', '--attack_steps=1', '--unroll=full'])
  assert r['batch'] is not None and r['batch'] % 32 == 0
  assert r['batch_gib'] <= limit_gib
  # The next multiple would not fit (the fit is linear in the batch to within a few KiB).
  next_gib = (r['fixed_mib'] + r['per_image_mib'] * (r['batch'] + 32)) / 1024
  assert next_gib > limit_gib * 0.999


@pytest.mark.parametrize('unroll', ['auto', 'full', 'none'])
def test_attack_benchmarks_run_with_every_unroll(unroll, capsys):
  import perturb_cost
  import step_count
  perturb_cost.bench('cnn', 0.25, (8, 8, 1), 4, rounds=1, reps=1, steps=2, unroll=unroll)
  step_count.bench('cnn', 0.25, (8, 8, 1), 4, rounds=1, reps=1, steps=2, unroll=unroll)
  out = capsys.readouterr().out
  assert out.count('x PGD-2') == len(perturb_cost.REGIMES) + 3  # + pgd, count/device, count/host
