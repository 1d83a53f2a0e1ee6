"""Every refusal names the field the user set: a defense's reserve, split or phase batch
that leaves a phase too few images, and a reused generator trained with other settings,
each one line before anything trains; informational lines stay off stderr; a refusal
found after a phase trained hands the workdir to the corrected command."""

import json
import os
import subprocess

import numpy as np
import pytest

from cli import REPO, cli_command, cli_env, load_config, run_cli

from abd_jax import config as config_lib
from abd_jax import generators, parallel, workdir as workdir_lib
from abd_jax.defenses import check_sizes
from abd_jax.errors import ConfigError

N = 1437  # digits' training images


def assert_one_line_error(proc, *needles):
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr
  for needle in needles:
    assert needle in lines[0], lines[0]


# ------------------------------------------------------------- sizes, before anything trains


@pytest.mark.parametrize('spec, overrides, devices, needles', [
    ('dst.py', dict(defense__dst_train='at_clean', defense__dst_clean_ratio=0.01), 1,
     ['defense.dst_clean_ratio` = 0.01', '14 of the n = 1437', 'at least 0.0891']),
    ('dst.py', dict(defense__dst_train='at_clean_suspicious', defense__dst_clean_ratio=0.01,
                    defense__dst_poison_ratio=0.98), 1,
     ['defense.dst_poison_ratio` = 0.98', '29 of the n = 1437', 'at most 0.9109']),
    ('dst.py', dict(defense__dst_clean_ratio=0.01, defense__dst_poison_ratio=0.01), 1,
     ['defense.dst_clean_ratio` = 0.01', "'secure'", 'at least 0.0794']),
    ('dst.py', dict(defense__dst_contrastive_batch=2000), 1,
     ['defense.dst_contrastive_batch` = 2000', 'at most the 1437']),
    ('dbd.py', dict(defense__dbd_simclr_batch=2000), 1,
     ['defense.dbd_simclr_batch` = 2000', 'at most the 1437']),
    ('fp.py', dict(defense__clean_fraction=0.0001), 2,
     ['defense.clean_fraction` = 0.0001', 'fewer than the 2 devices', 'at least 0.0014']),
    ('fp.py', dict(defense__clean_fraction=0.99), 1,
     ['defense.clean_fraction` = 0.99', 'leaving 15 to train the backdoored model',
      'at most 0.9554']),
    ('nad.py', dict(defense__clean_fraction=0.95, attack__poison_rate=0.1), 1,
     ['defense.clean_fraction` = 0.95', 'poisons 143', 'at most 0.9004']),
    ('abl.py', dict(defense__abl_isolation_ratio=0.99), 1,
     ['defense.abl_isolation_ratio` = 0.99', 'leaving 15 to fine-tune on', 'at most 0.9554']),
    ('abl.py', dict(defense__abl_isolation_ratio=0.0001), 2,
     ['defense.abl_isolation_ratio` = 0.0001', 'fewer than the 2 devices', 'at least 0.0014']),
])
def test_sizes_name_the_defense_field(spec, overrides, devices, needles):
  config = load_config(f'configs/{spec}:digits', **overrides)
  poisoned = int(config.attack.poison_rate * N)
  with pytest.raises(ConfigError) as e:
    check_sizes(config, N, poisoned, devices)
  for needle in needles:
    assert needle in str(e.value), str(e.value)


@pytest.mark.parametrize('spec', ['dst.py:digits', 'dst.py:at,digits', 'dbd.py:digits',
                                  'fp.py:digits', 'nad.py:digits', 'abl.py:digits'])
def test_shipped_digits_configs_pass_the_size_checks(spec):
  config = load_config(f'configs/{spec}')
  check_sizes(config, N, int(config.attack.poison_rate * N), 2)


@pytest.mark.parametrize('how', ['secure', 'at_clean', 'at_clean_suspicious'])
@pytest.mark.parametrize('clean, poison', [(0.2, 0.05), (0.01, 0.98), (0.7, 0.7), (1.0, 0.0)])
def test_dst_counts_are_the_split_it_makes(how, clean, poison):
  from abd_jax.defenses import dst
  scores = np.random.default_rng(0).normal(size=101)
  flags = dst.split_by_sensitivity(scores, clean, min(poison, 1 - clean))
  rows = dst._trained_rows(flags, how)
  assert rows.sum() == dst.trained_count(101, clean, min(poison, 1 - clean), how)


def test_phase_batches_split_over_the_devices():
  config = load_config('configs/dbd.py:digits', defense__dbd_simclr_batch=127)
  assert ('defense.dbd_simclr_batch', 127) in config_lib.device_batches(config)
  with pytest.raises(ConfigError, match='defense.dbd_simclr_batch` = 127 .* multiple of the 2'):
    config_lib.validate_for_devices(config, 2)
  config_lib.validate_for_devices(config, 2, phases=False)  # a phase's own config


def fake_devices(n):
  return cli_env(XLA_FLAGS=f'--xla_force_host_platform_device_count={n}')


def refuse(workdir, spec, *overrides, env=None):
  proc = subprocess.run(cli_command(workdir, *overrides, config=spec), cwd=REPO,
                        env=env or cli_env(), capture_output=True, text=True, timeout=300)
  assert not os.path.exists(workdir)
  return proc


@pytest.mark.parametrize('spec, overrides, devices, needles', [
    # The three: each blamed train.batch_size, D-ST's only after its SD phases.
    ('configs/dbd.py:digits', ['--config.defense.dbd_simclr_batch=127'], 2,
     ['defense.dbd_simclr_batch` = 127', 'multiple of the 2 devices']),
    ('configs/fp.py:digits', ['--config.defense.clean_fraction=0.0001'], 2,
     ['defense.clean_fraction` = 0.0001', 'at least 0.0014']),
    ('configs/dst.py:digits', ['--config.defense.dst_train=at_clean',
                               '--config.defense.dst_clean_ratio=0.01'], 1,
     ['defense.dst_clean_ratio` = 0.01', 'at least 0.0891']),
])
def test_the_command_line_names_the_defense_field(tmp_path, spec, overrides, devices, needles):
  proc = refuse(tmp_path / 'run', spec, *overrides, env=fake_devices(devices))
  assert_one_line_error(proc, *needles)


# ------------------------------------------------------------------------- reused generators


def fake_generator(folder, **attack):
  """A finished ssba generator run as `_stored_run` sees it (nothing is restored before
  the settings are compared)."""
  config = generators.generator_config(config_lib.load_file('configs/ssba.py:digits'))
  config.attack.update(attack)
  run_dir = folder / 'generator_ssba'
  (run_dir / 'checkpoints').mkdir(parents=True)
  workdir_lib.write_json(str(run_dir / 'config.json'), config_lib.to_dict(config))
  workdir_lib.write_json(str(run_dir / 'results.json'), {'bit_acc_random': 1.0})
  return str(run_dir)


def test_a_reused_generator_with_another_bit_count_is_one_line(tmp_path):
  run_dir = fake_generator(tmp_path / 'gen', ssba_bits=8)
  proc = refuse(tmp_path / 'run', 'configs/ssba.py:digits',
                f'--config.attack.generator_workdir={tmp_path / "gen"}')
  assert_one_line_error(proc, 'attack.ssba_bits` = 16', 'ssba_bits = 8', run_dir)


def test_a_reused_generator_must_agree_on_bound_and_width(tmp_path):
  fake_generator(tmp_path / 'gen', ssba_max_residual=0.2, generator_width=8)
  config = load_config('configs/ssba.py:digits', attack__generator_workdir=str(tmp_path / 'gen'))
  with pytest.raises(ConfigError, match='attack.ssba_max_residual.*= 0.2'):
    generators.check_reused(config)
  config.attack.ssba_max_residual = 0.2
  with pytest.raises(ConfigError, match='attack.generator_width.*= 8'):
    generators.check_reused(config)
  config.attack.generator_width = 8
  assert generators.check_reused(config)[0] == str(tmp_path / 'gen' / 'generator_ssba')


# ---------------------------------------------------------------------- informational lines


def test_the_cpu_split_note_leaves_stderr_to_the_error(tmp_path):
  env = cli_env()
  env.pop('JAX_NUM_CPU_DEVICES', None)  # the command line's own split (conftest sets 1)
  proc = refuse(tmp_path / 'run', 'configs/quickstart.py:digits',
                '--config.train.batch_size=4096', env=env)
  assert_one_line_error(proc, 'train.batch_size')
  if parallel.cpu_device_count([64, 120], parallel.usable_cores()) > 1:
    assert 'abd_jax: the CPU runs as' in proc.stdout


# -------------------------------------------------------------- a refusal after a phase trained


def phase_trained(workdir):
  """A refused run's workdir: config.json, a trained detector, its top-level files."""
  (workdir / 'detector' / 'checkpoints' / '1').mkdir(parents=True)
  workdir_lib.write_json(str(workdir / 'detector' / 'config.json'), {'seed': 0})
  workdir_lib.write_json(str(workdir / 'config.json'), {'seed': 0, 'defense': {'x': 1}})
  for name in ('detection.json', 'detection.npz', 'detection_scores.png'):
    (workdir / name).write_text('made with the refused config')


def test_a_late_refusal_hands_the_workdir_to_the_corrected_command(tmp_path):
  workdir = tmp_path / 'run'
  phase_trained(workdir)
  workdir_lib.hand_back(str(workdir), created=True, resumed=False, error='the field')
  assert sorted(os.listdir(workdir)) == ['detector', workdir_lib.REFUSED]
  refused = json.loads((workdir / workdir_lib.REFUSED).read_text())
  assert refused == {'config': {'seed': 0, 'defense': {'x': 1}}, 'error': 'the field'}
  corrected = {'seed': 0, 'defense': {'x': 2}}
  assert workdir_lib.problem(str(workdir), corrected) is None
  assert not workdir_lib.prepare(str(workdir), corrected, overwrite=False)  # not a resume
  assert sorted(os.listdir(workdir)) == ['config.json', 'detector']
  assert workdir_lib.prepare(str(workdir), corrected, overwrite=False)  # now its own run


def test_a_top_level_that_trained_is_never_handed_back(tmp_path):
  workdir = tmp_path / 'run'
  phase_trained(workdir)
  (workdir / 'checkpoints' / '3').mkdir(parents=True)
  before = sorted(os.listdir(workdir))
  workdir_lib.hand_back(str(workdir), created=False, resumed=True, error='late')
  assert sorted(os.listdir(workdir)) == before


@pytest.mark.slow
def test_the_corrected_command_reuses_the_detector_without_overwrite(tmp_path):
  # Activation clustering's split depends on the trained detector: found only after it.
  workdir = tmp_path / 'run'
  args = ('--config.defense.detector_epochs=1', '--config.train.batch_size=1400',
          '--config.eval.robust=false', '--config.log.progress=false')
  spec = 'configs/activation_clustering.py:digits,smoke'
  bad = run_cli(workdir, *args, '--config.defense.ac_size_threshold=0.5', config=spec,
                check=False)
  assert_one_line_error(bad, 'defense.ac_size_threshold` = 0.5', 'train.batch_size = 1400')
  detector = workdir / 'detector' / 'results.json'
  stamp = os.path.getmtime(detector)
  run_cli(workdir, *args, '--config.defense.ac_size_threshold=0.0', config=spec)
  assert os.path.getmtime(detector) == stamp
  assert (workdir / 'results.json').exists() and not (workdir / workdir_lib.REFUSED).exists()
