"""A-ABL's comparison defenses (dbd, dst, cbd) and the augmentation split end to end on
digits, against BadNets and Blended (10%, dirty-label, target 0), each phase shortened to
what still shows the defense's mechanism."""

import os

import jax
import numpy as np
import pytest

from abd_jax import experiment
from abd_jax.data import load_dataset
from abd_jax.defenses.cbd import cbd_objective
from abd_jax.defenses.dbd import projection_objective
from abd_jax.defenses.dst import PROJECTION_DIM
from abd_jax.train.objective import CLEAN, POISONED, SUSPICIOUS
from abd_jax.train.restore import load_run_variables
from cli import load_config as load, read_json

pytestmark = pytest.mark.slow

ATTACKS = ('badnets', 'blended')
SHORT = {
    'dbd': dict(defense__dbd_simclr_epochs=15, defense__dbd_warmup_epochs=5, train__epochs=3),
    'dst': dict(defense__dst_sd_epochs=2, defense__dst_sd_finetune_epochs=2,
                defense__dst_contrastive_epochs=6, train__epochs=6),
    'cbd': dict(defense__cbd_backdoor_epochs=3, train__epochs=5),
}


@pytest.fixture(scope='module')
def shared():
  return experiment.Shared()


def run(shared, tmp_path, defense: str, attack: str, **overrides):
  config = load(f'configs/{defense}.py:{attack},digits', eval__robust=False,
                **{**SHORT[defense], **overrides})
  workdir = str(tmp_path / f'{defense}_{attack}')
  return workdir, experiment.run(config, workdir, shared=shared, verbose=False)


@pytest.mark.parametrize('attack', ATTACKS)
def test_dbd_leaves_the_poisons_unlabelled_and_removes_the_backdoor(shared, tmp_path, attack):
  workdir, results = run(shared, tmp_path, 'dbd', attack)
  # The linear head on the self-supervised backbone fits the poisons' labels worst, so
  # the labelled half holds (almost) none of them; MixMatch then learns no backdoor.
  assert results['removed_total'] == 1437 - int(1437 * 0.5)
  assert results['poison_total'] == 143
  assert results['kept_poison_rate'] <= 0.02 and results['detection_auroc'] >= 0.8
  assert results['warmup_asr'] <= 0.3 and results['asr'] <= 0.2
  for phase in ('simclr', 'warmup'):
    assert os.path.isfile(os.path.join(workdir, phase, 'results.json'))
  assert 'clean_acc' not in read_json(os.path.join(workdir, 'simclr', 'results.json'))
  assert os.path.isfile(os.path.join(workdir, 'dbd_split.png'))


@pytest.mark.parametrize('attack', ATTACKS)
def test_dst_splits_by_sensitivity_and_trains_securely(shared, tmp_path, attack):
  workdir, results = run(shared, tmp_path, 'dst', attack)
  with np.load(os.path.join(workdir, 'detection.npz')) as saved:
    flags, scores, poisoned = saved['flags'], saved['score'], saved['poisoned']
  n = len(flags)
  assert (flags == CLEAN).sum() == int(0.2 * n) and (flags == POISONED).sum() == int(0.05 * n)
  # Clean = least sensitive, poisoned = most sensitive.
  assert scores[flags == CLEAN].max() <= scores[flags == SUSPICIOUS].min()
  assert scores[flags == SUSPICIOUS].max() <= scores[flags == POISONED].min()
  sizes = [results[f'dst_{s}_size'] for s in ('clean', 'suspicious', 'poisoned')]
  poisons = [results[f'dst_{s}_poisons'] for s in ('clean', 'suspicious', 'poisoned')]
  assert sum(sizes) == n and sum(poisons) == poisoned.sum() == 143
  assert results['trained_fraction'] == pytest.approx((sizes[0] + sizes[2]) / n)
  if attack == 'badnets':  # a corner patch rotates away: the poisons are the sensitive ones
    assert results['detection_auroc'] >= 0.6
  # The final model is a head on the frozen contrastive encoder: same backbone.
  config = load(f'configs/dst.py:{attack},digits', **SHORT['dst'])
  data = load_dataset(config.dataset, 0)
  _, final = load_run_variables(workdir, data, fallback=config)
  _, encoder = load_run_variables(os.path.join(workdir, 'contrastive'), data, fallback=config,
                                  objective=projection_objective(config, data, 'supcon',
                                                                 PROJECTION_DIM))
  for name, value in encoder['params'].items():
    if name not in ('head', 'head_hidden'):
      for a, b in zip(jax.tree.leaves(value), jax.tree.leaves(final['params'][name])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dst_adversarial_training_on_its_split(shared, tmp_path):
  """A-ABL Table 4: PGD-AT on D-ST's clean + uncertain samples."""
  workdir, results = run(shared, tmp_path, 'dst', 'badnets', defense__dst_train='at_clean',
                         perturb__name='linf', perturb__steps=2, train__epochs=2)
  assert results['trained_fraction'] == pytest.approx(int(0.2 * 1437) / 1437)
  assert not os.path.exists(os.path.join(workdir, 'contrastive'))


@pytest.mark.parametrize('attack', ATTACKS)
def test_cbd_removes_the_early_backdoor(shared, tmp_path, attack):
  workdir, results = run(shared, tmp_path, 'cbd', attack)
  assert results['backdoored_asr'] >= 0.9  # f_B learned the backdoor in 3 epochs
  assert results['asr'] <= results['backdoored_asr'] - 0.5
  assert results['num_params'] == 94186  # the critic is not part of the model
  config = load(f'configs/cbd.py:{attack},digits', **SHORT['cbd'])
  data = load_dataset(config.dataset, 0)
  _, variables = load_run_variables(workdir, data, fallback=config,
                                    objective=cbd_objective(config, data))
  assert 'critic' in variables['params']
