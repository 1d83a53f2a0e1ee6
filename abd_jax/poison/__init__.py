"""Backdoor poisoning: attacks, index selection, manifests and triggered test sets.

    poisoned = poison_dataset(config, data, context)   # context: a surrogate or generator
    poisoned.train      # Dataset with the poisoned training split
    poisoned.backdoor   # BackdoorTestSet for asr / backdoor_acc
    poisoned.manifest   # what poison_manifest.json records
"""

from abd_jax.poison.attacks import BUILDERS, GENERATOR_ATTACKS, SURROGATE_KINDS
from abd_jax.poison.base import Attack, AttackContext, TrainedGenerator
from abd_jax.poison.core import (Poisoned, apply_uint8, build_attack, check_poisoning, poison_dataset,
                                 triggered_test_set)
from abd_jax.poison.manifest import read_manifest, write_manifest

ATTACK_NAMES = ('none',) + tuple(BUILDERS)
LABEL_MODES = ('dirty', 'clean')
PATTERNS = ('checkerboard', 'random')

__all__ = ['ATTACK_NAMES', 'Attack', 'AttackContext', 'GENERATOR_ATTACKS', 'LABEL_MODES',
           'PATTERNS', 'Poisoned', 'SURROGATE_KINDS', 'TrainedGenerator', 'apply_uint8',
           'build_attack', 'check_poisoning', 'poison_dataset', 'read_manifest',
           'triggered_test_set', 'write_manifest']
