"""The papers' numbers, as copied into `experiments/paper/NAME.md`.

One file holds one table (or one figure's stated numbers) of a seed paper:

    # Gao et al. (TNNLS'23), Table I: ...
    paper: Gao et al., On the Effectiveness of Adversarial Training ..., IEEE TNNLS 2023
    table: Table I
    dataset: cifar10
    model: ResNet-18
    setting: 10% poisoned, target 0, ...
    keys: attack, training
    units: percent

    | attack | training | clean_acc | asr |
    | --- | --- | --- | --- |
    | badnets | standard | 94.1 | 100.0 |

    Notes: free text.

`keys` names the columns that identify a row; the others hold the printed values (a
number, `732/750`, `-` for none, or a word the paper's text states for a figure without
numbers). `parse` refuses a malformed file with a message naming the file and the line.
"""

from __future__ import annotations

import dataclasses
import os
import re

REQUIRED = ('paper', 'table', 'dataset', 'model', 'setting', 'keys', 'units')
UNITS = ('percent', 'fraction', 'count', 'mixed')
MISSING = ('-', '–', '—', '')
_HEADER = re.compile(r'^([a-z_]+):\s*(.*)$')
_NUMBER = re.compile(r'^[<>≈~]?\s*[-+]?\d+(\.\d+)?$')
_RATIO = re.compile(r'^(\d+)\s*/\s*(\d+)$')


class PaperTableError(ValueError):
  """A paper-numbers file cannot be read; the message names the file and the line."""


@dataclasses.dataclass(frozen=True)
class PaperTable:
  """One table of a paper. `rows`: one dict per table row, column -> cell text (as
  printed). `meta`: the header lines (`paper`, `table`, `dataset`, ...)."""
  name: str
  title: str
  meta: dict[str, str]
  keys: tuple[str, ...]
  columns: tuple[str, ...]
  rows: tuple[dict[str, str], ...]
  notes: str = ''

  @property
  def values(self) -> tuple[str, ...]:
    """The value columns (every column that is not a key), in table order."""
    return tuple(c for c in self.columns if c not in self.keys)

  @property
  def dataset(self) -> str:
    return self.meta['dataset']

  def key_of(self, row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row[k] for k in self.keys)

  def row(self, key: tuple[str, ...]) -> dict[str, str] | None:
    """The row whose key cells are `key` (in `keys` order), or None."""
    for r in self.rows:
      if self.key_of(r) == key:
        return r
    return None


def number(cell: str) -> float | None:
  """A cell as a number: `93.1` -> 93.1, `732/750` -> 732/750 as a fraction (0.976),
  `~0` -> 0.0; None for `-` or a word (`high`)."""
  cell = cell.strip().rstrip('%')
  if cell in MISSING:
    return None
  ratio = _RATIO.match(cell)
  if ratio:
    return int(ratio.group(1)) / max(int(ratio.group(2)), 1)
  if _NUMBER.match(cell):
    return float(cell.lstrip('<>≈~ '))
  return None


def _cells(line: str) -> list[str]:
  return [c.strip() for c in line.strip().strip('|').split('|')]


def parse(text: str, name: str) -> PaperTable:
  """The PaperTable in `text` (the contents of experiments/paper/NAME.md)."""
  def fail(lineno: int, why: str) -> PaperTableError:
    return PaperTableError(f'{name}.md line {lineno}: {why}')

  lines = text.splitlines()
  title, meta, table, notes = '', {}, [], []
  for lineno, line in enumerate(lines, 1):
    stripped = line.strip()
    if stripped.startswith('|'):
      if notes:
        raise fail(lineno, 'a second table: a paper-numbers file holds exactly one')
      table.append((lineno, stripped))
    elif table:
      notes.append(line)
    elif stripped.startswith('# ') and not title:
      title = stripped[2:].strip()
    elif _HEADER.match(stripped):
      key, value = _HEADER.match(stripped).groups()
      meta[key] = value.strip()
  if not title:
    raise fail(1, 'no title: the first line must be `# <paper>, <table>: <caption>`')
  missing = [k for k in REQUIRED if not meta.get(k)]
  if missing:
    raise fail(1, f'missing header line(s) {", ".join(f"`{k}:`" for k in missing)}: each of '
               f'{", ".join(REQUIRED)} is required before the table')
  if meta['units'] not in UNITS:
    raise fail(1, f'units: {meta["units"]!r} is not one of {", ".join(UNITS)}')
  if len(table) < 3:
    raise fail(len(lines), 'no table: a header row, a `| --- |` row and at least one row')
  columns = _cells(table[0][1])
  if len(set(columns)) != len(columns) or '' in columns:
    raise fail(table[0][0], f'column names must be distinct and non-empty: {columns}')
  if not all(set(c) <= set('-: ') for c in _cells(table[1][1])):
    raise fail(table[1][0], 'the second table row must be the `| --- |` separator')
  keys = tuple(k.strip() for k in meta['keys'].split(','))
  unknown = [k for k in keys if k not in columns]
  if unknown:
    raise fail(1, f'keys: {", ".join(unknown)} not among the columns {columns}')
  rows, seen = [], set()
  for lineno, line in table[2:]:
    cells = _cells(line)
    if len(cells) != len(columns):
      raise fail(lineno, f'{len(cells)} cells for {len(columns)} columns')
    row = dict(zip(columns, cells))
    key = tuple(row[k] for k in keys)
    if key in seen:
      raise fail(lineno, f'duplicate key {dict(zip(keys, key))}')
    seen.add(key)
    rows.append(row)
  return PaperTable(name, title, meta, keys, tuple(columns), tuple(rows),
                    '\n'.join(notes).strip())


def load(path: str) -> PaperTable:
  """Parses the file at `path`; its name (without .md) is the table's name."""
  with open(path, encoding='utf-8') as f:
    return parse(f.read(), os.path.splitext(os.path.basename(path))[0])
