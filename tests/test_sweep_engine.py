"""The sweep engine's pieces without training: grouping by static structure, the choice of
execution, the workdir claim, the poisoned-rows overlay, the stacked evaluator and the
import layering."""

import ast
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abd_jax import config as config_lib
from abd_jax import evaluate, parallel
from abd_jax.data.overlay import Overlaid, gather, overlay_rows
from abd_jax.models import create_model
from abd_jax.perturb import make_perturbation
from abd_jax.sweep import engine, grid
from abd_jax.workdir import WorkdirError
from cli import REPO


def sweep_config(axes, **kw):
  c = config_lib.apply_digits_scale(config_lib.apply_attack_defaults(config_lib.base_config(),
                                                                     'badnets'))
  c.sweep = grid.sweep_block(axes, **kw)
  return c


def test_traced_values_share_a_group_and_static_ones_split_it():
  points = grid.expand(sweep_config({
      'eps': grid.axis(('perturb.eps', 'perturb.step_size'), ((0.0, 0.0), (0.1, 0.025))),
      'alpha': grid.axis('attack.alpha', (0.2, 1.0)),
      'rate': grid.axis('attack.poison_rate', (0.05, 0.1)),
      'steps': grid.axis('perturb.steps', (2, 3))}, seeds=(0, 1)))
  groups = engine.plan(points, 'auto', 64, 'cpu', 1)
  # ε, α, the poison rate and the seed are traced or data; the loop count is static.
  assert len(groups) == 2
  assert {p.overrides['perturb.steps'] for p in groups[0].points} == {2}
  assert len(groups[0].points) == len(groups[1].points) == 16
  assert engine.static_signature(points[0].config) != engine.static_signature(
      grid.expand(sweep_config({'m': grid.axis('model.width', (0.5,))}))[0].config)


def test_vmapped_groups_are_split_at_max_stack():
  points = grid.expand(sweep_config({'alpha': grid.axis('attack.alpha', (0.2, 0.4, 0.6, 0.8, 1.0))}))
  groups = engine.plan(points, 'vmap', 2, 'cpu', 1)
  assert [len(g.points) for g in groups] == [2, 2, 1]
  assert [g.execution for g in groups] == ['vmap'] * 3  # the whole group's choice
  assert len({g.name for g in groups}) == 3


@pytest.mark.parametrize('backend, devices, model, expected', [
    ('cpu', 1, 'cnn', 'sequential'),   # measured 0.25x on 2 CPU cores
    ('cpu', 2, 'cnn', 'sequential'),   # CPU devices are cores: they split each batch
    ('gpu', 1, 'cnn', 'vmap'),         # measured 9.0x with 64 runs on an H100
    ('gpu', 1, 'resnet18', 'sequential'),  # 0.78x: vmapped convolutions are grouped
    ('tpu', 8, 'resnet18', 'vmap'),    # every device steps its own runs
])
def test_auto_execution_rule(backend, devices, model, expected):
  c = sweep_config({'alpha': grid.axis('attack.alpha', (0.2, 1.0))})
  c.model.name = model
  execution, reason = engine.choose_execution('auto', grid.expand(c), backend, devices)
  assert execution == expected and reason


def test_defenses_always_run_sequentially():
  c = sweep_config({'alpha': grid.axis('attack.alpha', (0.2, 1.0))}, execution='vmap')
  c.defense.name = 'spectral'
  execution, reason = engine.choose_execution('vmap', grid.expand(c), 'gpu', 8)
  assert execution == 'sequential' and 'spectral' in reason


def test_point_command_reproduces_the_point_config(tmp_path):
  c = sweep_config({'eps': grid.axis(('perturb.eps', 'perturb.step_size'), ((0.2, 0.05),)),
                    'alpha': grid.axis('attack.alpha', (0.5,))}, seeds=(3,))
  file_config = grid.split_config(sweep_config({}))[0]
  c.train.epochs = 2  # as a command-line override of the sweep would
  point = grid.expand(c)[0]
  command = engine.point_command(point, str(tmp_path), 'configs/x.py:digits', file_config)
  for flag in ('--config.perturb.eps=0.2', '--config.perturb.step_size=0.05',
               '--config.attack.alpha=0.5', '--config.seed=3', '--config.train.epochs=2',
               '--sweep_point', f'--workdir={tmp_path}/points/{point.name}'):
    assert flag in command
  assert 'log.' not in command and '--config.sweep' not in command


def test_workdir_of_another_sweep_or_a_run_is_refused(tmp_path):
  a = sweep_config({'alpha': grid.axis('attack.alpha', (0.2, 1.0))})
  b = sweep_config({'alpha': grid.axis('attack.alpha', (0.2, 0.6))})
  workdir = str(tmp_path / 'sweep')
  assert engine.claim_workdir(workdir, a, overwrite=False) is False
  open(os.path.join(workdir, engine.SWEEP_JSON), 'w').write(
      '{"config": %s}' % a.to_json())
  assert engine.claim_workdir(workdir, a, overwrite=False) is True
  with pytest.raises(WorkdirError, match=r'sweep of a different config.*sweep\.axes\.alpha\.values'):
    engine.claim_workdir(workdir, b, overwrite=False)
  assert engine.claim_workdir(workdir, b, overwrite=True) is False
  assert os.listdir(workdir) == []
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  (run_dir / 'config.json').write_text('{}')
  with pytest.raises(WorkdirError, match='single run'):
    engine.claim_workdir(str(run_dir), a, overwrite=False)


def test_overlay_gathers_what_the_poisoned_copy_holds():
  rng = np.random.default_rng(0)
  clean = rng.integers(0, 256, (20, 4, 4, 1), dtype=np.uint8)
  poisoned = clean.copy()
  changed = np.array([2, 7, 11])
  poisoned[changed] = 255 - poisoned[changed]
  rows, slot = overlay_rows(changed, poisoned[changed], len(clean), num_rows=5)
  idx = jnp.asarray(rng.permutation(20)[:8].astype(np.int32))
  got = gather(Overlaid(jnp.asarray(clean), jnp.asarray(rows), jnp.asarray(slot)), idx)
  np.testing.assert_array_equal(got, poisoned[np.asarray(idx)])
  # vmapped over runs with different rows, the clean images shared
  rows2, slot2 = overlay_rows(changed[:1], clean[changed[:1]] // 2, len(clean), num_rows=5)
  stacked = Overlaid(jnp.asarray(clean), jnp.stack([rows, rows2]), jnp.stack([slot, slot2]))
  both = jax.vmap(gather, in_axes=(Overlaid(None, 0, 0), None))(stacked, jnp.arange(20))
  np.testing.assert_array_equal(both[0], poisoned)
  expected = clean.copy()
  expected[2] = clean[2] // 2
  np.testing.assert_array_equal(both[1], expected)
  with pytest.raises(ValueError):
    overlay_rows(changed, poisoned[changed], len(clean), num_rows=2)


def test_stacked_evaluator_equals_one_evaluator_per_run():
  model = create_model('cnn', 10, 0.25)
  keys = jax.random.split(jax.random.key(0), 3)
  variables = [model.init(k, jnp.zeros((1, 8, 8, 1)), train=False) for k in keys]
  stacked = jax.tree.map(lambda *v: jnp.stack(v), *variables)
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (50, 8, 8, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, 50).astype(np.int32)
  mesh = parallel.make_mesh()
  attack = make_perturbation('linf', 2, True, 'auto')
  one = evaluate.Evaluator(model, attack, 16, mesh)
  many = evaluate.Evaluator(model, attack, 16, parallel.make_runs_mesh(1), stacked=True)
  shared = evaluate.make_eval_set(images, labels, 16, mesh)
  clean = many.accuracy(stacked, shared)
  # per-run sets of different sizes
  sizes = (50, 31, 7)
  per_run = evaluate.make_stacked_eval_set([images[:n] for n in sizes], [labels[:n] for n in sizes],
                                           16, parallel.make_runs_mesh(1))
  per_run_acc = many.accuracy(stacked, per_run)
  hp = {'eps': jnp.full((3,), 0.1, jnp.float32), 'step_size': jnp.full((3,), 0.05, jnp.float32)}
  robust = many.robust_accuracy(stacked, shared, keys, hp)
  for g, v in enumerate(variables):
    assert clean[g] == one.accuracy(v, shared)
    own = evaluate.make_eval_set(images[:sizes[g]], labels[:sizes[g]], 16, mesh)
    assert per_run_acc[g] == one.accuracy(v, own)
    assert abs(robust[g] - one.robust_accuracy(v, shared, keys[g], jax.tree.map(lambda a: a[g], hp))) <= 0.02


LOWER_LAYERS = ('data', 'models', 'perturb', 'poison', 'train', 'defenses')


def _imports(path):
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('abd_jax'):
      yield node.module, [a.name for a in node.names]
    elif isinstance(node, ast.Import):
      yield from ((a.name, []) for a in node.names if a.name.startswith('abd_jax'))


def _targets(module, names):
  """The abd_jax modules an import statement reaches: `from abd_jax import x` names x."""
  if module == 'abd_jax':
    return [f'abd_jax.{n}' for n in names]
  return [module]


@pytest.mark.parametrize('layer, forbidden', [
    # nothing below the sweep imports it, and nothing below the reproductions imports them
    (('', 'data', 'models', 'perturb', 'poison', 'train', 'defenses'), ('abd_jax.sweep',
                                                                        'abd_jax.reproduce')),
    (('sweep', 'generators'), ('abd_jax.reproduce',)),
    # data, poison, train and defenses import downward only: no training inside poisoning,
    # no run orchestration below the experiment layer
    (('data', 'models', 'perturb', 'poison'), ('abd_jax.train', 'abd_jax.defenses',
                                               'abd_jax.experiment', 'abd_jax.surrogate',
                                               'abd_jax.generators', 'abd_jax.config')),
    (('train',), ('abd_jax.defenses', 'abd_jax.experiment', 'abd_jax.surrogate',
                  'abd_jax.generators')),
    (('defenses',), ('abd_jax.experiment', 'abd_jax.surrogate', 'abd_jax.generators')),
    # trigger generators are trained by the run layer, which hands them to poisoning
    (('generators',), ('abd_jax.experiment', 'abd_jax.surrogate', 'abd_jax.defenses',
                       'abd_jax.sweep')),
])
def test_layers_import_downward_only(layer, forbidden):
  files = []
  for package in layer:
    if package:
      files += glob.glob(os.path.join(REPO, 'abd_jax', package, '**', '*.py'), recursive=True)
    else:  # the modules below the experiment layer at the top of the package
      files += [os.path.join(REPO, 'abd_jax', f) for f in
                ('config.py', 'evaluate.py', 'parallel.py', 'workdir.py', 'errors.py',
                 'figures.py', 'plots.py', 'timing.py', 'experiment.py', 'surrogate.py')]
  assert files
  for path in files:
    for module, names in _imports(path):
      for target in _targets(module, names):
        assert not target.startswith(forbidden), f'{os.path.relpath(path, REPO)} imports {target}'


def test_a_diverging_run_of_a_stacked_group_fails_alone(tmp_path, monkeypatch):
  """One vmapped run whose loss becomes NaN is reported as diverged; the others finish."""
  from abd_jax.data import load_dataset
  from abd_jax.train import StackedRun, TrainingDivergedError, programs, train_and_evaluate_stacked
  real = programs.make_train_step

  def exploding(*args, **kwargs):
    step = real(*args, **kwargs)

    def wrapped(state, metrics, images, labels, order, index, key, hp):
      state, metrics = step(state, metrics, images, labels, order, index, key, hp)
      blow = jnp.where(hp['eps'] > 0.5, jnp.nan, 1.0)  # only the run with the huge budget
      return state, dict(metrics, loss_sum=metrics['loss_sum'] * blow)
    return wrapped

  monkeypatch.setattr(programs, 'make_train_step', exploding)
  programs.clear_cache()
  c = config_lib.apply_digits_scale(config_lib.base_config())
  c.train.epochs, c.perturb.steps, c.eval.robust, c.log.progress = 2, 1, False, False
  data = load_dataset(c.dataset, 0)
  runs = []
  for name, eps in (('calm', 0.1), ('wild', 0.9)):
    cfg = c.copy_and_resolve_references()
    cfg.perturb.eps = eps
    (tmp_path / name).mkdir()
    runs.append(StackedRun(cfg, str(tmp_path / name), data.y_train, np.zeros(0, np.int64),
                           data.x_train[:0]))
  try:
    calm, wild = train_and_evaluate_stacked(runs, data, str(tmp_path / 'group'))
  finally:
    programs.clear_cache()
  assert isinstance(wild, TrainingDivergedError) and 'wild: the training loss became nan' in str(wild)
  assert calm['epochs'] == 2 and 0.0 <= calm['clean_acc'] <= 1.0
  epochs = lambda name: [json.loads(line)['epoch'] for line in open(tmp_path / name / 'metrics.jsonl')]
  assert epochs('calm') == [1, 2] and epochs('wild') == []  # nothing logged from a NaN
  assert os.listdir(tmp_path / 'calm' / 'checkpoints') == ['2']  # its own final model


def test_a_busy_or_refused_sweep_leaves_its_workdir_untouched(tmp_path):
  from abd_jax import workdir as workdir_lib
  from abd_jax.sweep.grid import SweepError
  config = sweep_config({'alpha': grid.axis('attack.alpha', (0.2, 1.0))})
  workdir = str(tmp_path / 'sweep')
  with workdir_lib.locked(workdir):  # another sweep works there
    with pytest.raises(WorkdirError, match=f'in use by another run \\(process {os.getpid()}'):
      engine.run(config, workdir, verbose=False)
  assert os.listdir(workdir) == [workdir_lib.LOCK]
  config.attack.patch_size = 9  # larger than the 8×8 digits: found with the data
  with pytest.raises(SweepError, match='attack.patch_size'):
    engine.run(config, str(tmp_path / 'bad'), verbose=False)
  assert not (tmp_path / 'bad').exists()
