"""Trigger gallery: what each backdoor attack does to an image, as PNG figures.

    python -m abd_jax.gallery --config=configs/quickstart.py --out=/tmp/gallery \
        --config.dataset.image_size=32 --alphas=0.2,0.5,1.0

For every attack it writes `gallery_<attack>.png`: one row per training image (several
classes for dirty-label attacks, the target class for clean-label ones) with the clean
image, the poisoned training image, the test-time triggered image, the amplified residual
and, with `--alphas`, the trigger at several strengths (the ICLR'22 Fig. 2 series). The
overview `gallery.png` has one row per attack. Digits are 8x8 grey; upsampling them with
`--config.dataset.image_size=32` makes the triggers easier to see, and
`--config.dataset.name=synthetic` (random noise, 32x32x3) shows them on colour images.

The attacks are built exactly as a run with the same config and seed builds them (same
keys, hence the same blended noise and WaNet field). No poison manifest is written and,
for the default attacks, nothing is trained; lc and trojan (shown only when named in
`--attacks`) first train a surrogate model, in OUT/<attack>/surrogate_*, and iab and ssba
their trigger generator, in OUT/<attack>/generator_<attack> (or read it from
`--config.attack.generator_workdir`). For these sample-specific attacks every row has its
own trigger: the amplified residual column shows how it follows the image.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from abd_jax import cli
from abd_jax import config as config_lib
from abd_jax import plots, poison, surrogate
from abd_jax.data import Dataset, load_dataset
from abd_jax.errors import ConfigError
from abd_jax.poison import (BUILDERS, GENERATOR_ATTACKS, SURROGATE_KINDS, Attack, apply_uint8,
                            select)
from abd_jax.poison.core import attack_keys, check_attack_config

# Built only when named in --attacks: they need a trained surrogate model or trigger
# generator (minutes).
NEEDS_SURROGATE = tuple(SURROGATE_KINDS) + GENERATOR_ATTACKS
# Attacks that only exist as clean-label ones; their gallery switches the label mode.
CLEAN_LABEL_ONLY = ('lc',)
# How each attack's `strength` is called in its paper; the column titles use it.
STRENGTH_NAMES = {'badnets': 'α', 'blended': 'α', 'sig': 'δ', 'wanet': 'warp×',
                  'lc': 'amplitude', 'trojan': 'α', 'iab': 'strength', 'ssba': 'residual×'}


@dataclasses.dataclass(frozen=True)
class GalleryRows:
  """The figure data of one attack; n images, images uint8 [n,H,W,C] in 0..255.

  indices: int [n] positions in the training set; labels / new_labels: int32 [n] the true
  label and the label the poisoned copy is trained with. poisoned: `attack.poison` (what
  the training set stores); triggered: `attack.trigger` at the attack's own strength
  (what the ASR is measured on); cross: WaNet's noise-mode images (labels kept) or None;
  strip: uint8 [S,n,H,W,C], the trigger at each of `strengths`.
  """
  attack: str
  indices: np.ndarray
  labels: np.ndarray
  new_labels: np.ndarray
  clean: np.ndarray
  poisoned: np.ndarray
  triggered: np.ndarray
  cross: np.ndarray | None
  strength: float
  strengths: tuple[float, ...]
  strip: np.ndarray
  params: dict


def notes(config: ml_collections.ConfigDict, attacks: Sequence[str], width: int) -> list[str]:
  """Warnings about settings that make a figure look unlike the attack's paper, for
  images `width` pixels wide."""
  out = []
  # `attack.alpha` is shared with badnets, whose 1.0 (an opaque patch) turns a blended
  # image into the bare pattern; the blended attack is used with 0.05-0.2. (Switching
  # from another attack already picks 0.2, see `attack_config`.)
  if 'blended' in attacks and config.attack.name == 'blended' and config.attack.alpha > 0.5:
    out.append(f'blended at attack.alpha={config.attack.alpha:g} hides the image under the '
               'pattern; the attack is used with 0.05-0.2 (--config.attack.alpha=0.2, or '
               'see the --alphas strip)')
  # Above the Nyquist limit the sampled sinusoid aliases to fewer, coarser stripes.
  if 'sig' in attacks and config.attack.sig_freq > width / 2:
    out.append(f'sig: attack.sig_freq={config.attack.sig_freq:g} periods do not fit in '
               f'{width} pixels (at most {width // 2}); the stripes alias. Upsample, e.g. '
               '--config.dataset.image_size=32')
  return out


def default_attacks() -> tuple[str, ...]:
  """Every registered attack that can be built without training a model first."""
  return tuple(name for name in BUILDERS if name not in NEEDS_SURROGATE)


def attack_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """A validated copy of `config` with `attack.name = name`."""
  if name not in BUILDERS:
    raise ConfigError('attack.name', name, f'the gallery can show {", ".join(BUILDERS)}')
  cfg = config.copy_and_resolve_references()
  cfg.attack.name = name
  if name == 'blended' and config.attack.name != 'blended':
    cfg.attack.alpha = 0.2  # the alpha of another attack (badnets: 1) would hide the image
  if name in CLEAN_LABEL_ONLY:
    cfg.attack.label_mode = 'clean'
  config_lib.validate(cfg)
  return cfg


def build_attack(config: ml_collections.ConfigDict, data: Dataset, workdir: str
                 ) -> tuple[Attack, jax.Array, jax.Array]:
  """(attack, poison_key, cross_key) for `config.attack`, as `poison_dataset` builds them.

  The keys are derived as in `abd_jax.poison.core.poison_dataset`, so random patterns
  (blended noise, the WaNet field, a random BadNets patch) are the ones a run with this
  seed trains on. `workdir` is where lc / trojan find or train their surrogate model and
  iab / ssba their trigger generator.
  """
  check_attack_config(config.attack, data)
  _, poison_key, cross_key = attack_keys(config.seed)
  attack = poison.build_attack(config, data, surrogate.attack_context(config, data, workdir))
  return attack, poison_key, cross_key


def choose_examples(labels: np.ndarray, cfg: ml_collections.ConfigDict, num_classes: int,
                    num: int) -> np.ndarray:
  """Indices of `num` images a run could poison, spread over classes.

  Dirty-label: one image of each non-target class in turn (target+1, target+2, ...; every
  class for all-to-all), then a second of each, and so on. Clean-label: the first images
  of the target class. Deterministic: the earliest images of each class.
  """
  if cfg.label_mode == 'clean':
    classes = [cfg.target]
  else:
    start = 0 if cfg.all_to_all else 1
    classes = [(cfg.target + i) % num_classes for i in range(start, num_classes)]
  by_class = [list(np.flatnonzero(labels == c)) for c in classes]
  chosen = []
  for rank in range(max((len(b) for b in by_class), default=0)):
    chosen += [b[rank] for b in by_class if rank < len(b)]
    if len(chosen) >= num:
      break
  if not chosen:
    raise ConfigError('attack.target', cfg.target, 'the training set has no image to poison')
  return np.asarray(chosen[:num], np.int64)


def triggered_uint8(attack: Attack, images: np.ndarray, strengths: Sequence[float]) -> np.ndarray:
  """`attack.trigger` at each strength: uint8 [S,n,H,W,C] from uint8 [n,H,W,C].

  Rounded like `triggered_test_set` does. The strength is a traced argument, so the
  trigger compiles once for the whole series.
  """
  fn = jax.jit(lambda x, s: jnp.round(attack.trigger(x.astype(jnp.float32) / 255.0, s) * 255.0)
               .astype(jnp.uint8))
  return np.stack([np.asarray(fn(images, jnp.float32(s))) for s in strengths])


def gallery_rows(config: ml_collections.ConfigDict, data: Dataset, num: int = 4,
                 strengths: Sequence[float] = (), workdir: str = '') -> GalleryRows:
  """Builds `config.attack` and applies it to `num` training images (see `GalleryRows`)."""
  cfg = config.attack
  attack, poison_key, cross_key = build_attack(config, data, workdir)
  idx = choose_examples(data.y_train, cfg, data.num_classes, num)
  clean, labels = data.x_train[idx], data.y_train[idx]
  new_labels = select.poisoned_labels(labels, cfg.target, cfg.label_mode, cfg.all_to_all,
                                      data.num_classes)
  poisoned = apply_uint8(attack.poison, clean, poison_key)
  cross = apply_uint8(attack.cross, clean, cross_key) if attack.cross is not None else None
  series = triggered_uint8(attack, clean, (attack.strength, *strengths))
  return GalleryRows(attack=cfg.name, indices=idx, labels=labels, new_labels=new_labels,
                     clean=clean, poisoned=poisoned, triggered=series[0], cross=cross,
                     strength=float(attack.strength), strengths=tuple(map(float, strengths)),
                     strip=series[1:], params=dict(attack.params))


# ------------------------------------------------------------------------------ figures


def _strength_label(name: str, value: float) -> str:
  return f'{STRENGTH_NAMES.get(name, "strength")}={value:.3g}'


def _params_text(params: dict, width: int = 100) -> str:
  """`attack.params` as a short summary for a figure title, wrapped to `width` characters.

  Only scalars: arrays (a trojan's optimized pattern) are what the figure itself shows.
  """
  parts = []
  for key, value in params.items():
    if value is None or key == 'corner':  # corner repeats patch_size + position
      continue
    if isinstance(value, float):
      parts.append(f'{key}={value:.3g}')
    elif isinstance(value, (bool, int, str)) and len(str(value)) <= 40:
      parts.append(f'{key}={value}')
  return '\n'.join(textwrap.wrap(', '.join(parts), width))


def _residual_title(signed: bool, gain: float) -> str:
  what = r'$\tilde{x}-x$' if signed else r'$|\tilde{x}-x|$'
  return f'{what} ×{gain:.3g}'


def save_attack_figure(rows: GalleryRows, path: str, data_name: str,
                       signed: bool = False) -> str:
  """`gallery_<attack>.png`: one row per image, the columns of `GalleryRows`."""
  gain = plots.residual_gain(rows.clean, rows.poisoned, signed)
  residual = plots.show_residual(rows.clean, rows.poisoned, signed, gain)
  columns = [('clean', rows.clean), ('poisoned (train)', rows.poisoned),
             (f'triggered (test)\n{_strength_label(rows.attack, rows.strength)}', rows.triggered),
             (_residual_title(signed, gain), residual)]
  if rows.cross is not None:
    columns.append(('noise mode\n(label kept)', rows.cross))
  columns += [(_strength_label(rows.attack, s), strip)
              for s, strip in zip(rows.strengths, rows.strip)]
  same = rows.labels == rows.new_labels
  row_labels = [f'#{i}: label {y}' + (' (kept)' if keep else f' → {t}')
                for i, y, t, keep in zip(rows.indices, rows.labels, rows.new_labels, same)]
  h, w, c = rows.clean.shape[1:]
  # About 16 title characters fit above each image column.
  params = _params_text(rows.params, width=max(40, 16 * len(columns)))
  title = f'{rows.attack} ({params})\n{data_name} {h}×{w}×{c}'
  grid = [[images[i] for _, images in columns] for i in range(len(rows.indices))]
  return plots.save_image_grid(path, grid, row_labels, [label for label, _ in columns],
                               title=title)


def save_overview(all_rows: Sequence[GalleryRows], path: str, data_name: str,
                  signed: bool = False) -> str:
  """`gallery.png`: one row per attack (clean, poisoned, residual of its first image).

  Each residual is amplified by its own attack's gain (in the row label): the attacks'
  footprints differ by orders of magnitude, and one common scale would hide the faint ones.
  """
  images, labels = [], []
  for rows in all_rows:
    gain = plots.residual_gain(rows.clean[:1], rows.poisoned[:1], signed)
    images.append([rows.clean[0], rows.poisoned[0],
                   plots.show_residual(rows.clean[0], rows.poisoned[0], signed, gain)])
    labels.append(f'{rows.attack}\nresidual ×{gain:.3g}')
  residual = r'$\tilde{x}-x$' if signed else r'$|\tilde{x}-x|$'
  h, w, c = all_rows[0].clean.shape[1:]
  return plots.save_image_grid(path, images, labels,
                               ['clean', 'poisoned', f'{residual} (amplified)'],
                               title=f'Backdoor triggers on {data_name} {h}×{w}×{c}')


def make_gallery(config: ml_collections.ConfigDict, out_dir: str,
                 attacks: Sequence[str] | None = None, num: int = 4,
                 strengths: Sequence[float] = (), signed: bool = False,
                 workdir: str | None = None) -> list[str]:
  """Writes `gallery_<attack>.png` for each attack and `gallery.png`; returns their paths.

  attacks: names in `BUILDERS` (default: `default_attacks()`); num: images per attack;
  strengths: the trigger strengths of the optional strip (alpha for badnets / blended,
  delta for sig, the warp scale for wanet; 1.0 = the configured field); workdir: lc and
  trojan find or train their surrogate model (iab and ssba their generator) in
  `<workdir>/<attack>/` (default `out_dir`; nothing is written there for the others).
  """
  attacks = tuple(attacks) if attacks else default_attacks()
  if num < 1:
    raise ValueError(f'--num must be at least 1, got {num}')
  configs = [attack_config(config, name) for name in attacks]  # fail before any work
  data = load_dataset(config.dataset, config.seed)
  for note in notes(config, attacks, data.image_shape[1]):
    print(f'warning: {note}', file=sys.stderr)
  os.makedirs(out_dir, exist_ok=True)
  paths, all_rows = [], []
  for cfg in configs:
    # One folder per attack: each keeps its own surrogate or generator there.
    run_dir = os.path.join(workdir or out_dir, cfg.attack.name)
    rows = gallery_rows(cfg, data, num, strengths, run_dir)
    all_rows.append(rows)
    paths.append(save_attack_figure(rows, os.path.join(out_dir, f'gallery_{rows.attack}.png'),
                                    data.name, signed))
  paths.append(save_overview(all_rows, os.path.join(out_dir, 'gallery.png'), data.name, signed))
  return paths


# ------------------------------------------------------------------------- command line

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/quickstart.py (digits, 8x8 grey). Add '
    '--config.dataset.image_size=32 to upsample (nearest) so the triggers are easier to see, '
    'or --config.dataset.name=synthetic --config.dataset.image_size=32 for 32x32 RGB noise.',
    lock_config=True)
_OUT = flags.DEFINE_string('out', None, 'Folder for gallery.png and gallery_<attack>.png.')
_ATTACKS = flags.DEFINE_list(
    'attacks', [], 'Attacks to show (default: all except '
    f'{", ".join(NEEDS_SURROGATE)}, which train a surrogate model or a trigger generator '
    'first and are shown only when named).')
_NUM = flags.DEFINE_integer('num', 4, 'Images per attack (different classes for dirty-label).',
                            lower_bound=1)
_ALPHAS = flags.DEFINE_list(
    'alphas', [], 'Trigger strengths for an extra strip, e.g. 0.2,0.5,1.0: alpha for '
    'badnets/blended, delta for sig, warp scale for wanet (1.0 = the configured field).')
_RESIDUAL = flags.DEFINE_enum('residual', 'abs', ['abs', 'signed'],
                              'abs: |poisoned - clean|; signed: centred on grey.')
_WORKDIR = flags.DEFINE_string('workdir', '', 'lc/trojan find or train their surrogate model, '
                               'iab/ssba their generator, in WORKDIR/<attack>/ (default: --out).')
flags.mark_flags_as_required(['config', 'out'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.quiet_storage_logs()
  config = cli.load_config(_CONFIG)
  unknown = [name for name in _ATTACKS.value if name not in BUILDERS]
  if unknown:
    print(f'error: --attacks: unknown attack {unknown[0]!r}; choose from '
          f'{", ".join(BUILDERS)}', file=sys.stderr)
    sys.exit(2)
  try:
    strengths = [float(a) for a in _ALPHAS.value]
  except ValueError:
    print(f'error: --alphas must be numbers, e.g. 0.2,0.5,1.0; got {",".join(_ALPHAS.value)}',
          file=sys.stderr)
    sys.exit(2)
  cli.start_jax([config])  # lc / trojan train a surrogate first
  paths = cli.run_or_exit(lambda: make_gallery(
      config, _OUT.value, _ATTACKS.value, _NUM.value, strengths,
      signed=_RESIDUAL.value == 'signed', workdir=_WORKDIR.value or None))
  for path in paths:
    print(path)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
