"""A-ABL stage 2 (Zhao & Wressnegger, AISec'24, Sec. 5.2): split the training set by
adversarial vulnerability.

Every training sample is attacked with iFGSM (no random start, eps 2/255, 5 steps of
2/255 on CIFAR) against the stage-1 model; its symmetric cross-entropy (Wang et al. 2019)
after the attack is the splitting score. Otsu's threshold on the scores separates a
low-loss, adversarially *robust* group D_rob (where poisons with a memorized patch
trigger sit: the model keeps predicting the target label under the perturbation) from
the high-loss, *vulnerable* group D_vul, which is kept for stage 3 (PGD-AT from scratch).

Table 5's ablation replaces the adversarial perturbation by a strong augmentation
(`defense.split_method` = 'randaugment' | 'autoaugment', `augmented_sce`): the score is
the SCE of one augmented draw of each sample, split the same way. A poison whose trigger
survives the augmentation keeps a low loss, as under iFGSM; a trigger the augmentation
destroys (and every clean sample the augmentation confuses) lands in D_vul.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from abd_jax.data.strong_augment import POLICIES
from abd_jax.defenses.otsu import otsu_split
from abd_jax.defenses.scoring import map_samples
from abd_jax.perturb import attack_logits_fn
from abd_jax.perturb.base import resolve_unroll
from abd_jax.perturb.linf import ifgsm
from abd_jax.train.sce import symmetric_cross_entropy


def adversarial_sce(model, variables: dict, images: np.ndarray, labels: np.ndarray, *,
                    eps: float, step_size: float, steps: int, sce_alpha: float, sce_beta: float,
                    label_clamp: float, batch_size: int, mesh, unroll: str = 'auto') -> np.ndarray:
  """float32 [N]: SCE(f(iFGSM(x_i)), y_i) for every training sample (BatchNorm on its
  running statistics). images uint8 [N,H,W,C], labels int [N] (the training labels)."""
  loop_unroll = resolve_unroll(unroll)

  def per_batch(variables, x, y, valid, hp):
    del valid
    logits_fn = attack_logits_fn(model, variables, 'eval')
    x_adv = ifgsm(logits_fn, x, y, None, hp, steps=steps, unroll=loop_unroll)
    return symmetric_cross_entropy(logits_fn(x_adv), y, hp['alpha'], hp['beta'], hp['clamp'])

  hp = {'eps': jnp.float32(eps), 'step_size': jnp.float32(step_size),
        'alpha': jnp.float32(sce_alpha), 'beta': jnp.float32(sce_beta),
        'clamp': jnp.float32(label_clamp)}
  return map_samples(per_batch, variables, images, labels, batch_size, mesh, hp)


def augmented_sce(model, variables: dict, images: np.ndarray, labels: np.ndarray, *,
                  policy: str, key: jax.Array, sce_alpha: float, sce_beta: float,
                  label_clamp: float, batch_size: int, mesh) -> np.ndarray:
  """float32 [N]: SCE(f(A(x_i)), y_i) for one draw of the augmentation `policy` (a key of
  `strong_augment.POLICIES`) per sample, drawn with `fold_in(key, i)` on the device, so the
  scores do not depend on the batch size. BatchNorm on its running statistics."""
  augment = POLICIES[policy]

  def per_batch(variables, x, y, valid, rows, hp):
    del valid
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(rows)
    x_aug = jax.vmap(lambda k, xi: augment(k, xi[None])[0])(keys, x)
    logits = model.apply(variables, x_aug, train=False)
    return symmetric_cross_entropy(logits, y, hp['alpha'], hp['beta'], hp['clamp'])

  hp = {'alpha': jnp.float32(sce_alpha), 'beta': jnp.float32(sce_beta),
        'clamp': jnp.float32(label_clamp)}
  return map_samples(per_batch, variables, images, labels, batch_size, mesh, hp, with_rows=True)


@dataclasses.dataclass(frozen=True)
class Split:
  losses: np.ndarray     # float32 [N], SCE after iFGSM
  threshold: float       # Otsu threshold on `losses`
  vulnerable: np.ndarray  # bool [N]: loss > threshold, kept as D_vul


def split_by_vulnerability(losses: np.ndarray) -> Split:
  """Otsu split of the stage-2 losses; the high-loss side is D_vul."""
  threshold, high = otsu_split(np.asarray(losses, np.float64))
  return Split(np.asarray(losses, np.float32), float(threshold), high)
