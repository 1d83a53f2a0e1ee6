"""Figures a run writes into its workdir after training."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from abd_jax import parallel, plots
from abd_jax.data import Dataset
from abd_jax.perturb import attack_logits_fn, make_perturbation
from abd_jax.train.loop import perturb_hparams
from abd_jax.train.restore import load_run_variables

SPATIAL_REGIMES = ('spatial', 'cat', 'random_spatial')


def spatial_examples(config: ml_collections.ConfigDict, train: Dataset, indices: np.ndarray,
                     workdir: str, num: int = 6) -> str:
  """`spatial_examples.png`: poisoned training images next to their spatially adversarial
  versions under the trained model (Gao et al., TNNLS'23, Fig. 3: the flow breaks the patch
  trigger). Flow budget `perturb.eps_spatial`, `perturb.steps` steps, no relaxation.
  Every process computes it (the model lives on the whole mesh); process 0 writes it."""
  model, variables = load_run_variables(workdir, train, fallback=config)
  p = config.perturb
  attack = make_perturbation('spatial', p.steps, True, p.unroll)
  hp = dict(perturb_hparams(p), beta=jnp.float32(1.0))
  idx = np.asarray(indices)[:num]
  mesh = parallel.make_mesh()
  x, y, hp = parallel.put_replicated(
      (train.x_train[idx].astype(np.float32) / 255.0, train.y_train[idx].astype(np.int32), hp), mesh)
  logits_fn = attack_logits_fn(model, variables, 'eval')
  x_adv = jax.jit(lambda xx, yy: attack(logits_fn, xx, yy, jax.random.key(config.seed), hp))(x, y)
  pred, pred_adv, x, x_adv = parallel.fetch(
      (jnp.argmax(logits_fn(x), -1), jnp.argmax(logits_fn(x_adv), -1), x, x_adv))
  path = os.path.join(workdir, 'spatial_examples.png')
  if not parallel.is_writer():
    return path
  gain = plots.residual_gain(x, x_adv)
  rows = [[x[i], x_adv[i], plots.show_residual(x[i], x_adv[i], gain=gain)] for i in range(len(idx))]
  labels = [f'#{i}: pred {a} -> {b}' for i, a, b in zip(idx, pred, pred_adv)]
  plots.save_image_grid(path, rows, labels,
                        ['poisoned', f'spatial adv. (eps_s={p.eps_spatial:g})', f'|diff| x{gain:.3g}'],
                        title='Poisoned training images and their spatially adversarial versions')
  return path
