"""The detection files of a defense's workdir, written before its final training so that a
run killed in its last phase resumes there without scoring again.

    detection.npz   per-sample arrays: 'score', 'removed' (bool), 'poisoned' (bool), ...
    detection.json  the summary (result keys), written last: its presence marks a
                    finished detection
"""

from __future__ import annotations

import logging
import os

import numpy as np

from abd_jax import parallel, workdir as workdir_lib
from abd_jax.defenses import detection


DETECTION_JSON, DETECTION_NPZ = 'detection.json', 'detection.npz'


def saved_detection(workdir: str) -> tuple[dict | None, str | None]:
  """(the summary in detection.json, None) when it and detection.npz are readable;
  (None, why not) when detection.json exists but they are not; (None, None) when there is
  no detection.json (none was finished: detection.json is written last)."""
  path, npz = os.path.join(workdir, DETECTION_JSON), os.path.join(workdir, DETECTION_NPZ)
  if not os.path.exists(path):
    return None, None
  try:
    summary = workdir_lib.read_json(path)
  except (OSError, ValueError, UnicodeDecodeError) as e:
    return None, f'{path} cannot be read ({" ".join(str(e).split())[:120]})'
  if not isinstance(summary, dict) or 'removed_total' not in summary:
    return None, f'{path} does not hold a detection summary'
  if not os.path.exists(npz):
    return None, f'{npz} is missing'
  try:
    with np.load(npz) as saved:
      removed = np.asarray(saved['removed'])
      if removed.dtype != bool or int(removed.sum()) != summary['removed_total']:
        raise ValueError('its removed flags do not match detection.json')
  except Exception as e:  # zipfile, numpy and pickle raise many types for a damaged file
    return None, f'{npz} cannot be read ({type(e).__name__}: {" ".join(str(e).split())[:120]})'
  return summary, None


def cached(workdir: str, compute, announce: bool = True) -> dict:
  """`compute()`'s summary (it saves detection.npz itself), or the one an earlier,
  interrupted run of this workdir left in detection.json. Damaged detection files are
  computed again (from the same model: the result is the same), with one warning."""
  summary, problem = saved_detection(workdir)
  if parallel.agree(summary is None):
    if problem is not None:
      logging.warning('%s; computing the detection in %s again', problem, workdir)
    summary = compute()
    if parallel.is_writer():
      workdir_lib.write_json(os.path.join(workdir, DETECTION_JSON), summary)
    parallel.barrier('detection written')  # the callers read detection.npz next
  if announce:
    print(f'defense ({workdir}): {detection.describe(summary)}')
  return summary


def save_npz(workdir: str, **arrays) -> None:
  """Atomic: a kill never leaves half a detection.npz behind."""
  if not parallel.is_writer():
    return
  path = os.path.join(workdir, DETECTION_NPZ)
  with open(path + '.tmp', 'wb') as f:
    np.savez(f, **arrays)
  os.replace(path + '.tmp', path)
