"""abd_jax: adversarial training against backdoor attacks, in JAX/Flax."""

__version__ = '0.1.0'
