"""The notebooks stay in step with the library: every code cell compiles, every import
resolves, and every config they load builds; each starts with the setup cell that makes it run
on Colab; and (slow) each runs end to end with its small grid (ABD_JAX_NOTEBOOK_SMALL=1: 1-2
epochs, 2 sweep points), its runs in a temporary folder (ABD_JAX_NOTEBOOK_RUNS)."""

import ast
import glob
import importlib
import json
import os
import re

import pytest
import shutil

from abd_jax import config as config_lib
from cli import REPO

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, 'notebooks', '*.ipynb')))
# Provided by notebook front ends (Jupyter, Colab), not a dependency of the library.
FRONT_END_MODULES = ('IPython',)


def code_cells(path):
  with open(path) as f:
    notebook = json.load(f)
  assert notebook['nbformat'] == 4, path
  for cell in notebook['cells']:
    if cell['cell_type'] == 'code':
      # Shell and magic lines (`!pip`, `%cd`) are not Python.
      yield '\n'.join(line for line in ''.join(cell['source']).splitlines()
                      if not line.lstrip().startswith(('!', '%')))


def test_there_are_notebooks():
  assert {os.path.basename(p) for p in NOTEBOOKS} >= {'quickstart.ipynb', 'defenses.ipynb',
                                                      'sweeps.ipynb'}


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_the_first_code_cell_sets_up_a_checkout_or_colab(path):
  setup = next(code_cells(path))
  assert setup == ''.join(next(c for c in json.load(open(path))['cells']
                               if c['cell_type'] == 'code')['source']), 'no magics in setup'
  assert len(re.findall(r"^REPO_URL = 'https://github.com/[\w.-]+/[\w.-]+\.git'", setup, re.M)) == 1
  assert setup.count('REPO_URL') == 2  # defined once, used once
  for needed in ("os.environ.get('ABD_JAX_NOTEBOOK_SMALL') == '1'", 'ABD_JAX_NOTEBOOK_RUNS',
                 'os.chdir(root)', "'pip', 'install'", "'-e', '.'", 'sys.executable'):
    assert needed in setup, needed


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_cells_compile_and_imports_resolve(path):
  for source in code_cells(path):
    tree = ast.parse(source, filename=path)
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        modules = [(alias.name, None) for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        modules = [(node.module, alias.name) for alias in node.names]
      else:
        continue
      for module, name in modules:
        if module.split('.')[0] in FRONT_END_MODULES:
          continue
        imported = importlib.import_module(module)
        if name is not None and not hasattr(imported, name):
          importlib.import_module(f'{module}.{name}')  # a submodule


@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_configs_named_in_the_notebook_build(path):
  specs = set()
  for source in code_cells(path):
    specs.update(re.findall(r"['\"](configs/[\w/]+\.py(?::[\w,]+)?)['\"]", source))
  assert specs, f'{path} names no config'
  for spec in sorted(specs):
    config_lib.from_file(os.path.join(REPO, spec))  # builds and validates, or raises


# What each notebook's small run must leave in ABD_JAX_NOTEBOOK_RUNS.
EXPECTED_FILES = {
    'quickstart.ipynb': ('notebook_none/results.json', 'notebook_linf/results.json',
                         'notebook_linf/metrics.jsonl', 'gallery/gallery.png'),
    'defenses.ipynb': ('nb_pgd_defense/results.json', 'nb_pgd_defense/step_counts.png',
                       'nb_aabl/results.json', 'nb_aabl/detection.npz', 'nb_aabl/sce_split.png',
                       'nb_at/results.json'),
    'sweeps.ipynb': ('nb_eps_alpha_small/results.csv', 'nb_eps_alpha_small/results.jsonl',
                     'nb_eps_alpha_small/heatmap_asr.png', 'nb_eps_alpha_small/sweep.json'),
}


@pytest.mark.slow
@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_end_to_end_small(path, tmp_path, monkeypatch):
  nbformat = pytest.importorskip('nbformat')
  nbclient = pytest.importorskip('nbclient')
  pytest.importorskip('ipykernel')
  name = os.path.basename(path)
  copy = tmp_path / name
  shutil.copy(path, copy)
  runs = tmp_path / 'runs'
  # The kernel inherits this environment; it runs in notebooks/ of this checkout, so the setup
  # cell finds the checkout (no clone, no install) and writes nothing there.
  monkeypatch.setenv('ABD_JAX_NOTEBOOK_SMALL', '1')
  monkeypatch.setenv('ABD_JAX_NOTEBOOK_RUNS', str(runs))
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  # Two devices, as a user who splits the CPU (or has two GPUs) runs them: every array of the
  # notebook's runs goes through the data-parallel mesh.
  monkeypatch.setenv('JAX_NUM_CPU_DEVICES', '2')
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  notebook = nbformat.read(str(copy), as_version=4)
  for cell in notebook.cells:  # a committed run's outputs must not pass for this one's
    if cell.cell_type == 'code':
      cell.outputs, cell.execution_count = [], None
  client = nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3',
                                   resources={'metadata': {'path': os.path.dirname(path)}})
  client.execute()  # raises CellExecutionError on the first failing cell
  nbformat.write(notebook, str(copy))
  outputs = [o for c in notebook.cells if c.cell_type == 'code' for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  stderr = ''.join(o.get('text', '') for o in outputs if o.get('name') == 'stderr')
  assert 'Traceback' not in stderr and 'Warning' not in stderr, stderr
  assert any('image/png' in o.get('data', {}) for o in outputs), 'no figure shown'
  for relative in EXPECTED_FILES[name]:
    assert (runs / relative).is_file(), relative
  assert not os.path.exists(os.path.join(REPO, 'notebooks', 'runs'))
