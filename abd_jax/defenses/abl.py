"""Anti-backdoor learning (ABL; Li et al., NeurIPS 2021), with Gao et al.'s γ = 0.

    WORKDIR/isolation  the configured training for defense.abl_isolation_epochs with the
                       local-gradient-ascent loss sign(L − γ)·L (`objective`), constant lr
    detection.json     every training sample's cross-entropy under that model (BatchNorm
                       in inference mode); the abl_isolation_ratio lowest-loss samples are
                       isolated (abl_split.png: the loss distribution)
    WORKDIR/finetune   training continued on the other samples for abl_finetune_epochs
                       (the original's "finetuning_ascent_model": lr ÷ 10 after 2/3)
    WORKDIR            unlearning: gradient ascent on the cross-entropy of the isolated
                       samples for abl_unlearn_epochs at abl_unlearn_lr, without
                       augmentation, as the original

The original code ranks the losses in *descending* order before isolating; the paper
(Sec. 4) isolates the lowest-loss samples, which is what is done here. Its defaults are
20 isolation epochs (the paper's T_te; the code's 10), 1% isolated, 60 fine-tuning
epochs, unlearning at lr 5e-4 (the paper's 20 epochs; the code's 5); its SGD is Nesterov.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax

from abd_jax.defenses.scoring import map_samples


def sample_losses(model, variables: dict, images: np.ndarray, labels: np.ndarray,
                  batch_size: int, mesh) -> np.ndarray:
  """float32 [N]: cross-entropy of every sample (uint8 images [N,H,W,C], int labels [N])
  under `variables`, BatchNorm on its running statistics."""

  def per_batch(variables, x, y, valid):
    del valid
    logits = model.apply(variables, x, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).astype(jnp.float32)

  return map_samples(per_batch, variables, images, labels, batch_size, mesh)


def isolation_count(ratio: float, n: int) -> int:
  """floor(ratio·n), at least 1 (the original's int(n·ratio))."""
  return min(n, max(1, math.floor(ratio * n + 1e-9)))


def isolate_lowest(losses: np.ndarray, ratio: float) -> np.ndarray:
  """bool [N]: the `isolation_count(ratio, N)` samples with the lowest loss (ties: the
  lower index, so the choice is deterministic)."""
  isolated = np.zeros(len(losses), bool)
  isolated[np.argsort(np.asarray(losses, np.float64), kind='stable')[
      :isolation_count(ratio, len(losses))]] = True
  return isolated
