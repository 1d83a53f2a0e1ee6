"""CBD's mutual-information critic (Zhang et al., CVPR 2023; utils/util.py), trained in the
same fused step as the deconfounded model.

    Î(r; z) = mi_weight · ( mean_i T(r_i, z_i) − mean_i T(r_i, z_{i+1 mod B}) )

r: the backdoored model's penultimate features, z: the trained model's, T an MLP critic
on [r, z] (hidden width H, leaky ReLU 0.01, dropout 0.2 on its input and hidden layer,
always on as in the original). The critic ascends Î, the model descends it (r is fixed).
The marginal pairs are a cyclic shift by one, as the original. After every step each of
the critic's weight and bias arrays P is divided by sqrt(σ(P)) (σ: the largest singular
value from 5 power iterations; ‖b‖ for a bias), the original's normalization. Its
parameters live in the train state's params under 'critic' with their own Adam.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

CRITIC = 'critic'


class Critic(nn.Module):
  """T(r, z) -> float32 [B]. r, z: [B, F]."""
  hidden: int
  dropout: float = 0.2

  @nn.compact
  def __call__(self, r, z, key):
    k1, k2 = jax.random.split(key)
    x = jnp.concatenate([r, z], axis=-1).astype(jnp.float32)
    x = _dropout(k1, x, self.dropout)
    x = nn.leaky_relu(nn.Dense(self.hidden, name='hidden')(x), 0.01)
    x = _dropout(k2, x, self.dropout)
    return nn.Dense(1, name='out')(x)[:, 0]


def _dropout(key, x, rate):
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def mutual_information(critic: Critic, params: dict, r: jax.Array, z: jax.Array, key: jax.Array,
                       weight: jax.Array) -> jax.Array:
  """Î(r; z) above (scalar); r, z: [B, F]."""
  k_joint, k_marginal = jax.random.split(key)
  joint = critic.apply({'params': params}, r, z, k_joint)
  marginal = critic.apply({'params': params}, r, jnp.roll(z, -1, axis=0), k_marginal)
  return weight * (jnp.mean(joint) - jnp.mean(marginal))


def _largest_singular_value(w: jax.Array, iterations: int = 5) -> jax.Array:
  """σ_max of w [in, out] by power iteration from ones (the original's, not persistent)."""
  normalize = lambda v: v / jnp.maximum(jnp.linalg.norm(v), 1e-12)
  u = jnp.ones((w.shape[1],), w.dtype)
  for _ in range(iterations):
    v = normalize(w @ u)
    u = normalize(w.T @ v)
  return v @ w @ u


def normalize_critic(params: dict) -> dict:
  """Every array P of the critic divided by sqrt(σ(P)) (a bias: by sqrt(‖b‖))."""

  def one(p):
    sigma = _largest_singular_value(p) if p.ndim == 2 else jnp.linalg.norm(p)
    return p / jnp.sqrt(jnp.maximum(sigma, 1e-12))

  return jax.tree.map(one, params)


def init_critic(hidden: int, features: int, key: jax.Array) -> dict:
  """The critic's initial parameters for features of width `features`."""
  zeros = jnp.zeros((1, features), jnp.float32)
  return Critic(hidden).init(key, zeros, zeros, jax.random.key(0))['params']
