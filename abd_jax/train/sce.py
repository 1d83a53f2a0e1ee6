"""Symmetric cross-entropy per sample (Wang et al., ICCV 2019, "Symmetric Cross Entropy
for Robust Learning with Noisy Labels", Eq. 4-6):

    SCE = alpha · CE + beta · RCE,
    CE  = -log p_y,
    RCE = -sum_k p_k log q_k,

p the softmax, clamped to [1e-7, 1] inside RCE as in the authors' code, and q the one-hot
label clamped to [label_clamp, 1]. log q_k is 0 for k = y and log(label_clamp) otherwise,
so RCE = -log(label_clamp) · sum_{k != y} p_k, i.e. -log(label_clamp) · (1 - p_y) whenever
no probability is clamped.

Defaults: alpha = 0.1, beta = 1.0, the authors' CIFAR-10 setting, also used by DBD and
A-ABL. label_clamp = 1e-4 (log = -9.21) as in the authors' code; the paper's A = -4 is
label_clamp = e^-4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PROB_CLAMP = 1e-7


def symmetric_cross_entropy(logits: jax.Array, labels: jax.Array, alpha: float = 0.1,
                            beta: float = 1.0, label_clamp: float = 1e-4) -> jax.Array:
  """float [B] SCE of logits float [B,K] against integer labels [B] in [0, K).

  CE comes from log_softmax, so it stays finite for large logits. alpha, beta and
  label_clamp (in (0, 1]) may be traced arrays; the function is jit-able.
  """
  logits = jnp.asarray(logits)
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  log_p = jax.nn.log_softmax(logits, axis=-1)
  one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  ce = -jnp.sum(one_hot * log_p, axis=-1)
  p = jnp.clip(jnp.exp(log_p), PROB_CLAMP, 1.0)
  log_q = jnp.log(jnp.clip(one_hot, label_clamp, 1.0))
  rce = -jnp.sum(p * log_q, axis=-1)
  return alpha * ce + beta * rce
