"""The notebooks stay in step with the library: every code cell compiles, every import
resolves, and every config they load builds. (Running them end to end takes minutes; the
same runs are covered by the end-to-end tests.)"""

import ast
import glob
import importlib
import json
import os
import re

import pytest

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
  assert {os.path.basename(p) for p in NOTEBOOKS} >= {'quickstart.ipynb', 'defenses.ipynb'}


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
    specs.update(re.findall(r"['\"](configs/[\w]+\.py(?::[\w,]+)?)['\"]", source))
  assert specs, f'{path} names no config'
  for spec in sorted(specs):
    config_lib.from_file(os.path.join(REPO, spec))  # builds and validates, or raises
