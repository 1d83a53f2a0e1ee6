"""Training: state, optimizer, the fused jit'd step, checkpoints and the epoch loop."""

from abd_jax.train.checkpoint import CheckpointError, Checkpointer
from abd_jax.train.loop import (StackedRun, TrainingDivergedError, train_and_evaluate,
                                train_and_evaluate_stacked)
from abd_jax.train.state import TrainState, create_train_state
from abd_jax.train.step import make_train_step

__all__ = ['CheckpointError', 'Checkpointer', 'StackedRun', 'TrainingDivergedError', 'TrainState',
           'create_train_state', 'make_train_step', 'train_and_evaluate',
           'train_and_evaluate_stacked']
