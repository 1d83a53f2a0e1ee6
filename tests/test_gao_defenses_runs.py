"""The comparison defenses of Gao et al. (fp, nad, dpsgd, abl) end to end on digits BadNets
(1%, Gao's rate), each against the same standard-training run."""

import os

import numpy as np
import pytest

from abd_jax import experiment
from abd_jax.data import load_dataset
from abd_jax.errors import ConfigError
from abd_jax.train.restore import load_run_variables
from cli import load_config as load, read_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def standard(tmp_path_factory):
  """(workdir, results, shared) of the undefended run the defenses are compared with."""
  shared = experiment.Shared()
  workdir = str(tmp_path_factory.mktemp('gao') / 'st')
  results = experiment.run(load('configs/fp.py:digits', defense__name='none'), workdir,
                           shared=shared, verbose=False)
  assert results['asr'] >= 0.8 and results['clean_acc'] >= 0.95  # a working backdoor
  return workdir, results, shared


def test_fine_pruning_reuses_the_backdoored_model_and_lowers_asr(standard, tmp_path):
  st_dir, st, shared = standard
  workdir = str(tmp_path / 'fp')
  results = experiment.run(load('configs/fp.py:digits', defense__backdoored_workdir=st_dir),
                           workdir, shared=shared, verbose=False)
  assert results['backdoored_asr'] == st['asr']
  assert not os.path.exists(os.path.join(workdir, 'backdoored'))
  # The unpruned point of the curve is the backdoored model itself.
  curve = {c['ratio']: c for c in results['fp_curve']}
  assert curve[0.0]['clean_acc'] == pytest.approx(st['clean_acc'])
  assert curve[0.0]['asr'] == pytest.approx(st['asr'])
  assert len(curve) == 20 and results['fp_pruned_channels'] == 64 == results['fp_channels'] // 2
  assert results['clean_size'] == 71
  assert results['asr'] <= st['asr'] - 0.3 and results['clean_acc'] >= 0.9
  assert os.path.isfile(os.path.join(workdir, 'fp_pruning.png'))
  # The fine-tuned model keeps its pruned rows at zero.
  data = load_dataset(load('configs/fp.py:digits').dataset, 0)
  _, variables = load_run_variables(workdir, data, fallback=load('configs/fp.py:digits'))
  kernel = np.asarray(variables['params']['head']['kernel'])
  order = np.asarray(read_json(os.path.join(workdir, 'pruning.json'))['order'])
  assert np.all(kernel[order[:64]] == 0) and np.all(np.abs(kernel[order[64:]]).sum(1) > 0)


def test_attention_distillation_lowers_asr(standard, tmp_path):
  """Over seeds 0-4 (README "Across seeds") NAD ends at asr 0.00-0.21 from 0.92-0.98, at
  clean 0.39-0.82: 71 clean images and beta up to 1000 cost most of the accuracy on some
  seeds. Bounds: the asr falls by 0.3 at least, and the model stays well above chance."""
  st_dir, st, shared = standard
  results = experiment.run(load('configs/nad.py:digits', defense__backdoored_workdir=st_dir),
                           str(tmp_path / 'nad'), shared=shared, verbose=False)
  assert results['backdoored_asr'] == st['asr']
  assert {'teacher_clean_acc', 'teacher_asr'} <= set(results)
  assert results['asr'] <= st['asr'] - 0.3 and results['clean_acc'] >= 0.3


def test_dp_sgd_lowers_asr_and_its_model_restores(standard, tmp_path):
  _, st, shared = standard
  workdir = str(tmp_path / 'dpsgd')
  config = load('configs/dpsgd.py:digits')
  results = experiment.run(config, workdir, shared=shared, verbose=False)
  assert results['dp_noise'] == 0.1 and results['dp_clip'] == 1.0
  assert results['asr'] <= st['asr'] - 0.3 and results['clean_acc'] >= 0.85
  # The DP optimizer state (its noise key) is part of the checkpoint: the run restores.
  data = load_dataset(config.dataset, 0)
  _, variables = load_run_variables(workdir, data, fallback=config)
  assert not variables['batch_stats']


def test_backdoored_workdir_must_fit(standard, tmp_path):
  st_dir, _, shared = standard
  with pytest.raises(ConfigError, match='defense.backdoored_workdir.*another model block'):
    experiment.run(load('configs/fp.py:digits', defense__backdoored_workdir=st_dir,
                        model__width=0.5), str(tmp_path / 'w'), shared=shared, verbose=False)
  with pytest.raises(ConfigError, match='defense.backdoored_workdir.*finished run'):
    experiment.run(load('configs/nad.py:digits', defense__backdoored_workdir=str(tmp_path)),
                   str(tmp_path / 'v'), shared=shared, verbose=False)
  assert not os.path.exists(tmp_path / 'w') and not os.path.exists(tmp_path / 'v')


def test_anti_backdoor_learning_isolates_the_lowest_losses_and_unlearns_them(standard,
                                                                              tmp_path):
  """ABL's own setting (BadNets 10%, gamma 0.5). Over seeds 0-4 (README "Across seeds")
  the isolated 1% holds 14, 14, 5, 5 or 0 of the 143 poisons and unlearning it ends at asr
  0.51-1.0 from 1.0: whether ABL works on digits depends on the seed, so this test asserts
  the mechanism (the 14 lowest LGA losses isolated, unlearned, clean accuracy kept) and no
  effect size. (Gao's gamma = 0 at 1% isolates no more poisons than chance: README.)"""
  _, _, shared = standard
  workdir = str(tmp_path / 'abl')
  results = experiment.run(load('configs/abl.py:digits', attack__poison_rate=0.1,
                                defense__abl_gamma=0.5), workdir, shared=shared, verbose=False)
  assert results['removed_total'] == 14  # 1% of the 1,437 training images
  assert results['asr'] <= results['finetune_asr'] and results['clean_acc'] >= 0.9
  saved = np.load(os.path.join(workdir, 'detection.npz'))
  isolated, losses = saved['removed'], saved['score']
  assert losses[isolated].max() <= losses[~isolated].min()  # the lowest losses
  assert os.path.isfile(os.path.join(workdir, 'abl_split.png'))
  assert {'isolation_clean_acc', 'finetune_clean_acc'} <= set(results)


def test_fine_pruning_searches_the_ratio_closest_to_a_target(standard, tmp_path):
  st_dir, _, shared = standard
  workdir = tmp_path / 'fp_search'
  results = experiment.run(
      load('configs/fp.py:digits', defense__backdoored_workdir=st_dir, defense__fp_target_acc=0.9,
           defense__fp_ratios=(0.25, 0.85), defense__finetune_epochs=5),
      str(workdir), shared=shared, verbose=False)
  search = {s['ratio']: s for s in results['fp_search']}
  assert sorted(search) == [0.25, 0.85]
  assert (workdir / 'prune' / 'ratio_0.25' / 'results.json').exists()
  chosen = min(search, key=lambda r: abs(search[r]['clean_acc'] - 0.9))
  assert results['fp_prune_ratio'] == chosen
  # The final fine-tuning repeats the chosen search run exactly.
  assert results['clean_acc'] == search[chosen]['clean_acc']
  assert results['asr'] == search[chosen]['asr']
