"""`poison_manifest.json`: what was poisoned, how, and with which seed.

The indices are stored twice: in the JSON (so one file answers "was sample i poisoned?")
and as `poison_indices.npy` next to it, with a SHA-256 of their int64 bytes so a user can
check the two agree.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from abd_jax import workdir as workdir_lib

MANIFEST = 'poison_manifest.json'
INDICES = 'poison_indices.npy'


def indices_digest(indices: np.ndarray) -> str:
  return hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()


def build_manifest(*, attack: str, params: dict, target: int, label_mode: str, all_to_all: bool,
                   poison_rate: float, target_class_rate: float, indices: np.ndarray, seed: int,
                   num_train: int, extra: dict | None = None) -> dict:
  return {
      'attack': attack,
      'params': params,
      'target': target,
      'label_mode': label_mode,
      'all_to_all': all_to_all,
      'poison_rate': poison_rate,
      'target_class_rate': target_class_rate,
      'num_poisoned': int(len(indices)),
      'num_train': int(num_train),
      'actual_rate': len(indices) / num_train,
      'seed': seed,
      'indices': [int(i) for i in indices],
      'indices_file': INDICES,
      'indices_sha256': indices_digest(indices),
      **(extra or {}),
  }


def write_manifest(workdir: str, manifest: dict) -> None:
  np.save(os.path.join(workdir, INDICES), np.asarray(manifest['indices'], np.int64))
  workdir_lib.write_json(os.path.join(workdir, MANIFEST), manifest)


def read_manifest(workdir: str) -> dict:
  return workdir_lib.read_json(os.path.join(workdir, MANIFEST))
