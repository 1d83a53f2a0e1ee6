"""Sweeps: a grid of experiment configs as one command, vmapped where it pays and spread
over devices and hosts.

    python -m abd_jax.sweep --config=configs/sweeps/eps_alpha.py:digits --workdir=runs/eps_alpha

    points = grid.expand(config)          # the validated grid
    rows = engine.run(config, workdir)    # run (or resume) it; one row per point

This package sits above `abd_jax.experiment`; nothing below it imports it.
"""

from abd_jax.sweep import engine, grid, report
from abd_jax.sweep.grid import Axis, Point, SweepError, axis, expand, sweep_block

__all__ = ['Axis', 'Point', 'SweepError', 'axis', 'engine', 'expand', 'grid', 'report',
           'sweep_block']
