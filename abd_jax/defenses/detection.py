"""Removal rules and detection metrics shared by the defenses.

Removal (ICLR'22 seed, Algorithm 2, following Tran et al. 2018 and Chen et al. 2018):
remove the floor(factor * p * n) samples with the largest detection scores, factor = 1.5,
p the assumed poison rate. Metrics (DESIGN.md): poisoned removed / poisoned total (the
seeds' "732/750"), removed total, precision, recall, kept fraction gamma, poison rate of
the kept set rho, and the AUROC of the score against the true poison flag.
"""

from __future__ import annotations

import math

import numpy as np


def removal_count(rate: float, n: int, factor: float = 1.5) -> int:
  """floor(factor * rate * n), the count Algorithm 2 removes. The 1e-9 guards products
  such as 1.5 * 0.1 * 1000 = 149.99999999999997 against flooring one short."""
  return min(n, max(0, math.floor(factor * rate * n + 1e-9)))


def remove_top(scores: np.ndarray, count: int) -> np.ndarray:
  """bool [N]: the `count` samples with the largest scores. Ties go to the lower index
  (stable sort), so the choice is deterministic."""
  removed = np.zeros(len(scores), bool)
  if count > 0:
    removed[np.argsort(-np.asarray(scores, np.float64), kind='stable')[:count]] = True
  return removed


def detection_auroc(scores: np.ndarray, poisoned: np.ndarray) -> float | None:
  """AUROC of `scores` (higher = more suspicious) against the poison flag; None when one
  of the two groups is empty."""
  poisoned = np.asarray(poisoned, bool)
  if poisoned.all() or not poisoned.any():
    return None
  from sklearn.metrics import roc_auc_score  # here: importing sklearn.metrics takes ~1 s
  return float(roc_auc_score(poisoned, np.asarray(scores, np.float64)))


def detection_summary(removed: np.ndarray, poisoned: np.ndarray,
                      scores: np.ndarray | None = None) -> dict:
  """The result keys of a removal defense (fractions in [0, 1], counts as ints).

  removed, poisoned: bool [N]. kept_fraction = |kept| / N (A-ABL's gamma);
  kept_poison_rate = poisoned kept / |kept| (A-ABL's rho_vul); precision = poisoned removed
  / removed; recall = poisoned removed / poisoned total (None when undefined).
  """
  removed, poisoned = np.asarray(removed, bool), np.asarray(poisoned, bool)
  if removed.shape != poisoned.shape:
    raise ValueError(f'removed {removed.shape} and poisoned {poisoned.shape} differ in shape')
  n, kept = len(removed), ~removed
  hit = int((removed & poisoned).sum())
  out = {
      'poison_total': int(poisoned.sum()),
      'poison_removed': hit,
      'removed_total': int(removed.sum()),
      'kept_fraction': float(kept.sum() / n) if n else 0.0,
      'kept_poison_rate': float((kept & poisoned).sum() / kept.sum()) if kept.any() else 0.0,
      'precision': float(hit / removed.sum()) if removed.any() else None,
      'recall': float(hit / poisoned.sum()) if poisoned.any() else None,
  }
  if scores is not None:
    out['detection_auroc'] = detection_auroc(scores, poisoned)
  return out


def describe(summary: dict) -> str:
  """One line in the seeds' form: '732/750 poisoned removed; 1125 removed in all; ...'."""
  line = (f"{summary['poison_removed']}/{summary['poison_total']} poisoned removed; "
          f"{summary['removed_total']} removed in all; kept {summary['kept_fraction']:.2%} "
          f"with poison rate {summary['kept_poison_rate']:.2%}")
  if summary.get('detection_auroc') is not None:
    line += f"; AUROC {summary['detection_auroc']:.4f}"
  return line
