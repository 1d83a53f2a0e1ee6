"""Standard (non-adversarial) training of ResNet-18 on CIFAR-10; robust accuracy is still
measured with PGD-10 at 8/255. `:digits` runs it offline on digits."""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_preset(c, preset, 'configs/cifar10_st.py')
  c.perturb.name = 'none'
  return c
