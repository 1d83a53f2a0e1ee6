"""What the fused train step minimizes besides the configured perturbation and mixing:
the loss on the batch, and which parameters it may change.

    Objective()                        cross-entropy (every regime)
    Objective('lga')                   ABL's local gradient ascent, threshold hp['gamma']
    Objective('ascent')                gradient ascent on the cross-entropy (ABL unlearning)
    Objective('nad', nad_power=2)      cross-entropy + attention distillation to the
                                       teacher hp['teacher'] with weights hp['nad_betas']
    Objective(freeze_pruned=True)      the classifier rows hp['head_keep'] = 0 stay at zero
                                       (fine-pruning's fine-tuning)
    Objective('sce', head_only=True)   symmetric cross-entropy (hp 'sce_alpha', 'sce_beta',
                                       'sce_clamp') of a linear head on a frozen backbone
                                       (DBD's warm-up)
    Objective('mixed_ce', head_only=True)  D-ST's mixed cross-entropy: descent on the samples
                                       hp['sample_flags'] marks clean, ascent weighted by
                                       hp['ascent_weight'] on those it marks poisoned
    Objective('class_centers')         D-ST's separation loss on the penultimate features
    Objective('weighted_ce', critic=H) CBD: cross-entropy weighted against the backdoored
                                       model hp['teacher'], plus hp['mi_weight']·I(r; z)
                                       estimated by a critic of width H (`critic`)
    Objective('simclr' | 'supcon', projection=(H, D))  contrastive pre-training with an MLP
                                       projection head (`contrastive`)
    Objective('mixmatch')              semi-supervised fine-tuning, labelled rows
                                       hp['labelled'] (`mixmatch`)

The traced values (γ, β, weights, the teacher's variables, per-sample flags) arrive in the
step's `hp`, so they never recompile a program. Per-sample arrays ([N], the training
set's rows) are gathered with the batch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

CONTRASTIVE = ('simclr', 'supcon')
LOSSES = ('ce', 'lga', 'ascent', 'nad', 'sce', 'mixed_ce', 'class_centers', 'weighted_ce',
          'mixmatch') + CONTRASTIVE
# D-ST's sample flags (hp['sample_flags']): its clean, uncertain and poisoned subsets.
CLEAN, SUSPICIOUS, POISONED = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Objective:
  """loss: one of LOSSES. head_only: only the classifier 'head' learns; the backbone is
  frozen (no gradient, BatchNorm on its running statistics). projection: (hidden, dim) of
  the MLP projection head that replaces the classifier (contrastive losses). critic: the
  hidden width of CBD's mutual-information critic (0 = no MI term), trained by Adam at
  critic_lr."""
  loss: str = 'ce'
  nad_power: float = 2.0
  freeze_pruned: bool = False
  head_only: bool = False
  projection: tuple = ()
  critic: int = 0
  critic_lr: float = 0.2

  def __post_init__(self):
    if self.loss not in LOSSES:
      raise ValueError(f'Objective.loss: {self.loss!r} is not one of {", ".join(LOSSES)}')
    if (self.loss in CONTRASTIVE) != bool(self.projection):
      raise ValueError(f'Objective.projection: {self.projection!r}; the contrastive losses '
                       '(and only they) need (hidden, dim)')
    if self.critic and self.loss != 'weighted_ce':
      raise ValueError(f"Objective.critic: {self.critic}; only loss 'weighted_ce' has a critic")

  def outputs(self, num_classes: int) -> int:
    """The model's output width: the projection's dimension, or the classes."""
    return int(self.projection[1]) if self.projection else num_classes

  @property
  def head_hidden(self) -> int:
    return int(self.projection[0]) if self.projection else 0

  def key(self) -> list:
    """JSON-able identity (the programs cache key)."""
    return [self.loss, self.nad_power, self.freeze_pruned, self.head_only,
            list(self.projection), self.critic, self.critic_lr]


def local_gradient_ascent(ce: jax.Array, gamma: jax.Array) -> jax.Array:
  """ABL's LGA loss (Li et al., NeurIPS 2021, Eq. 3): sign(L − γ)·L for the batch's mean
  cross-entropy L; below γ the step ascends, which keeps the loss of the quickly learned
  (poisoned) samples near γ. With γ = 0 it is plain cross-entropy (Gao et al. set γ = 0)."""
  return jnp.sign(ce - gamma) * ce


def attention_map(features: jax.Array, power: float | jax.Array = 2.0,
                  eps: float = 1e-6) -> jax.Array:
  """NAD's attention map (Zagoruyko & Komodakis 2017, as in NAD's code): A = Σ_c |F_c|^p
  over the channels of F [B,H,W,C], divided by its L2 norm over H×W (+ eps). -> [B,H,W]
  float32."""
  a = jnp.sum(jnp.abs(features.astype(jnp.float32)) ** power, axis=-1)
  norm = jnp.sqrt(jnp.sum(a * a, axis=(1, 2), keepdims=True))
  return a / (norm + eps)


def attention_distillation(student: tuple, teacher: tuple, betas: jax.Array,
                           power: float | jax.Array = 2.0) -> jax.Array:
  """NAD's distillation loss (Li et al., ICLR 2021, Eq. 2-3): Σ_k β_k·mean((A_s,k −
  A_t,k)²) over the last len(betas) stages of `student` and `teacher` (tuples of [B,H,W,C]
  activations in forward order). The mean is over B·H·W, as torch's mse_loss."""
  k = betas.shape[0]
  if len(student) < k:
    raise ValueError(f'defense.nad_betas: {k} weights, but the model has only '
                     f'{len(student)} stages to distill')
  terms = [jnp.mean((attention_map(s, power) - attention_map(t, power)) ** 2)
           for s, t in zip(student[-k:], teacher[-k:])]
  return jnp.sum(betas * jnp.stack(terms))


def prune_head(params: dict, keep: jax.Array) -> dict:
  """`params` with the classifier's input rows multiplied by `keep` [C] (0 = pruned).
  Every model ends in global pooling + Dense('head'), so zeroing row c removes channel c
  of the last stage exactly as masking its activation would."""
  head = dict(params['head'])
  head['kernel'] = head['kernel'] * keep[:, None].astype(head['kernel'].dtype)
  return {**params, 'head': head}


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of `values` [B] over `mask` [B] (0 when the mask is empty, not NaN)."""
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def mixed_cross_entropy(ce: jax.Array, flags: jax.Array, ascent_weight: jax.Array) -> jax.Array:
  """D-ST's classifier loss (Chen et al., NeurIPS 2022; ST/train_classifier.py):
  mean CE over the batch's CLEAN samples − ascent_weight · mean CE over its POISONED ones
  (each mean within its own subset; 0.001 in the original). ce, flags: [B]."""
  return (masked_mean(ce, flags == CLEAN)
          - ascent_weight * masked_mean(ce, flags == POISONED))


def class_center_similarity(features: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """D-ST's feature-separation loss ("L_intra", finetune_attack_noTrans.py): the mean of
  S = Ĉ·Ĉᵀ over all K'² entries with its diagonal set to 0, Ĉ the L2-normalized centres
  (mean features [F]) of the K' classes present in the batch. features [B,F], labels [B]."""
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)        # [B,K]
  counts = one_hot.sum(0)
  present = (counts > 0).astype(jnp.float32)
  centres = one_hot.T @ features.astype(jnp.float32) / jnp.maximum(counts, 1.0)[:, None]
  centres = centres / jnp.maximum(jnp.linalg.norm(centres, axis=-1, keepdims=True), 1e-12)
  sim = centres @ centres.T * (1.0 - jnp.eye(num_classes)) * present[:, None] * present[None]
  return jnp.sum(sim) / jnp.maximum(jnp.sum(present), 1.0) ** 2


def cbd_weights(ce_backdoored: jax.Array, ce_model: jax.Array) -> jax.Array:
  """CBD's sample weights (Zhang et al., CVPR 2023; train.py): w_i = CE_B,i / (CE_B,i +
  CE_D,i + 1e-8), rescaled to mean 1 over the batch, without gradient. Samples the
  backdoored model f_B fits easily (the poisons: CE_B small) weigh little."""
  ce_b, ce_d = jax.lax.stop_gradient(ce_backdoored), jax.lax.stop_gradient(ce_model)
  w = ce_b / (ce_b + ce_d + 1e-8)
  return w * w.shape[0] / jnp.maximum(jnp.sum(w), 1e-12)
