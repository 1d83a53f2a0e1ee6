"""mixup and CutMix: the image mix matches the label weights, which sum to one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abd_jax.perturb.mix import cutmix, mixup

HP = {'mix_alpha': jnp.float32(1.0)}


def distinct_batch(b=8, h=8, w=8):
  """Image i is the constant i+1 / 10: every pixel tells which image it came from."""
  x = jnp.broadcast_to((jnp.arange(b, dtype=jnp.float32) + 1)[:, None, None, None] / 10, (b, h, w, 1))
  return x, jnp.arange(b, dtype=jnp.int32)


@pytest.mark.parametrize('seed', range(5))
def test_mixup_mixes_images_with_the_label_weight(seed):
  x, y = distinct_batch()
  xm, y2, lam = mixup(jax.random.key(seed), x, y, HP)
  assert 0.0 <= float(lam) <= 1.0
  # image i mixes its own value with its partner's: recover the partner from y2.
  expected = lam * x + (1 - lam) * x[y2]
  np.testing.assert_allclose(xm, expected, atol=1e-6)
  assert float(lam) + float(1 - lam) == pytest.approx(1.0)


@pytest.mark.parametrize('seed', range(5))
def test_cutmix_lambda_is_the_kept_pixel_fraction(seed):
  x, y = distinct_batch()
  xm, y2, lam = cutmix(jax.random.key(seed), x, y, HP)
  own = np.asarray(xm == x).mean(axis=(1, 2, 3))
  other = np.asarray(xm == x[y2]).mean(axis=(1, 2, 3))
  same = np.asarray(y2 == y)
  for i in np.flatnonzero(~same):  # paired with another image: pixels split lam / 1 - lam
    assert own[i] == pytest.approx(float(lam), abs=1e-6)
    assert other[i] == pytest.approx(1 - float(lam), abs=1e-6)
    assert own[i] + other[i] == pytest.approx(1.0)


def test_mix_alpha_is_traced():
  x, y = distinct_batch()
  f = jax.jit(mixup)
  f(jax.random.key(0), x, y, HP)
  f(jax.random.key(0), x, y, {'mix_alpha': jnp.float32(0.2)})
  assert f._cache_size() == 1
