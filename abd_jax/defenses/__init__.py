"""Detection and anti-backdoor defenses: minimum-PGD-steps counting and the PGD defense
(ICLR'22 seed), the two-phase pipeline, A-ABL (AISec'24), spectral signatures (Tran et al.
2018), activation clustering (Chen et al. 2018), and Gao et al.'s (TNNLS'23) comparison
defenses: fine-pruning, NAD, DP-SGD and ABL. `train_with_defense` runs the one
`config.defense.name` names around training (see `runner`); `check_sizes` checks, before
anything trains, that its phases get images enough (see `sizes`)."""

from abd_jax.defenses.runner import train_with_defense
from abd_jax.defenses.sizes import check_sizes

__all__ = ['check_sizes', 'train_with_defense']
