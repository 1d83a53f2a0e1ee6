"""PyTorch reference for `benchmarks/train_step.py`: eager, or with `compile=True` the
model under `torch.compile` (default mode; the strongest PyTorch peer).

The same two models as abd_jax, written by hand (no torchvision):

  * `resnet18`: kuangliu/pytorch-cifar ResNet-18 — 3x3 stride-1 stem, no max-pool,
    post-activation BasicBlocks [2, 2, 2, 2] with 1x1-conv + BN projection shortcuts;
    11,173,962 parameters for 3 input channels and 10 classes.
  * `cnn`: conv3x3(32)-BN-ReLU-conv3x3(64)-BN-ReLU-maxpool2-conv3x3(128)-BN-ReLU-
    global average pool-Linear, convs without bias; 94,186 parameters for 1 input
    channel and 10 classes.

and the same PGD-AT training step as `abd_jax.train.step.make_train_step` with an L-inf
PGD perturbation: gather a batch from an on-device uint8 dataset, PGD-K with a uniform
random start and BatchNorm in inference mode (input gradients only), then one SGD step
(momentum 0.9, weight decay 5e-4 added to the gradient, lr 0.1) on the adversarial batch
with BatchNorm in train mode.

torch is imported here, so `train_step.py` imports this module only when asked for the
PyTorch numbers.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):

  def __init__(self, in_planes: int, planes: int, stride: int = 1):
    super().__init__()
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.shortcut = nn.Sequential()
    if stride != 1 or in_planes != planes:
      self.shortcut = nn.Sequential(
          nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):

  def __init__(self, num_blocks=(2, 2, 2, 2), num_classes: int = 10, channels: int = 3):
    super().__init__()
    self.in_planes = 64
    self.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.layer1 = self._make_layer(64, num_blocks[0], 1)
    self.layer2 = self._make_layer(128, num_blocks[1], 2)
    self.layer3 = self._make_layer(256, num_blocks[2], 2)
    self.layer4 = self._make_layer(512, num_blocks[3], 2)
    self.linear = nn.Linear(512, num_classes)

  def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
    layers = []
    for s in [stride] + [1] * (num_blocks - 1):
      layers.append(BasicBlock(self.in_planes, planes, s))
      self.in_planes = planes
    return nn.Sequential(*layers)

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
    out = F.adaptive_avg_pool2d(out, 1).flatten(1)
    return self.linear(out)


class CNN(nn.Module):

  def __init__(self, num_classes: int = 10, channels: int = 1):
    super().__init__()
    self.conv1 = nn.Conv2d(channels, 32, 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(32)
    self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(64)
    self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
    self.bn3 = nn.BatchNorm2d(128)
    self.linear = nn.Linear(128, num_classes)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    x = F.relu(self.bn2(self.conv2(x)))
    x = F.max_pool2d(x, 2)
    x = F.relu(self.bn3(self.conv3(x)))
    return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


MODELS = {'resnet18': lambda k, c: ResNet((2, 2, 2, 2), k, c), 'cnn': lambda k, c: CNN(k, c)}


def create_model(name: str, num_classes: int, channels: int) -> nn.Module:
  if name not in MODELS:
    raise ValueError(f'torch reference: no model {name!r}; have {", ".join(MODELS)}')
  return MODELS[name](num_classes, channels)


def num_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def default_device() -> torch.device:
  return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


class TorchPGDStep:
  """One PGD-K AT step of `model` on batch `index` of an on-device uint8 dataset.

  images: uint8 [N, C, H, W] and labels int64 [N] live on `device`; `order` is the epoch's
  permutation, so `step(index)` gathers `order[index*B:(index+1)*B]` like the JAX step.
  dtype 'bfloat16' runs forward/backward under `torch.autocast` (parameters, BatchNorm
  statistics and the loss stay float32, as in abd_jax's bfloat16 models).
  compile: run the model under `torch.compile` (default mode). Train and eval mode are
  separate graphs, both compiled during the first step.
  """

  def __init__(self, model_name: str, *, batch_size: int, image_size: int, channels: int,
               num_classes: int, dtype: str = 'float32', steps: int = 10, eps: float = 8 / 255,
               step_size: float = 2 / 255, num_batches: int = 4, seed: int = 0,
               device: torch.device | None = None, channels_last: bool = False,
               compile: bool = False):
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(seed)
    self.device = device or default_device()
    if self.device.type == 'cuda':
      # Let cuDNN pick its fastest kernels for these shapes, as XLA autotunes its own.
      torch.backends.cudnn.benchmark = True
    self.batch_size, self.steps = batch_size, steps
    self.eps, self.step_size = eps, step_size
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.model = create_model(model_name, num_classes, channels).to(self.device)
    self.model = self.model.to(memory_format=self.memory_format)
    self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9,
                                     weight_decay=5e-4)
    if compile:
      self.model = torch.compile(self.model)
    if dtype not in ('float32', 'bfloat16'):
      raise ValueError(f'dtype must be float32 or bfloat16, got {dtype!r}')
    self.autocast_dtype = torch.bfloat16 if dtype == 'bfloat16' else None
    n = num_batches * batch_size
    g = torch.Generator().manual_seed(seed)
    self.images = torch.randint(0, 256, (n, channels, image_size, image_size), generator=g,
                                dtype=torch.uint8).to(self.device)
    self.labels = torch.randint(0, num_classes, (n,), generator=g).to(self.device)
    self.order = torch.randperm(n, generator=g).to(self.device)
    self.num_batches = num_batches
    self.loss_sum = torch.zeros((), device=self.device)
    self.correct = torch.zeros((), dtype=torch.int64, device=self.device)

  def _autocast(self):
    if self.autocast_dtype is None:
      return contextlib.nullcontext()
    return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

  def _logits(self, x):
    with self._autocast():
      return self.model(x).float()

  def step(self, index: int) -> None:
    b = self.batch_size
    idx = self.order[(index % self.num_batches) * b:(index % self.num_batches + 1) * b]
    x = (self.images[idx].float() / 255.0).contiguous(memory_format=self.memory_format)
    y = self.labels[idx]

    # Inner maximization: BatchNorm uses its running statistics, only input gradients.
    self.model.eval()
    x_adv = (x + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp_(0.0, 1.0)
    for _ in range(self.steps):
      x_adv.requires_grad_(True)
      loss = F.cross_entropy(self._logits(x_adv), y, reduction='sum')
      (grad,) = torch.autograd.grad(loss, x_adv)
      x_adv = x_adv.detach() + self.step_size * grad.sign()
      x_adv = torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps).clamp_(0.0, 1.0)

    # Outer minimization on the adversarial batch, BatchNorm in train mode.
    self.model.train()
    self.optimizer.zero_grad(set_to_none=True)
    logits = self._logits(x_adv.detach())
    loss = F.cross_entropy(logits, y)
    loss.backward()
    self.optimizer.step()
    with torch.no_grad():  # the same on-device metric sums as the JAX step
      self.loss_sum += loss.detach() * b
      self.correct += (logits.argmax(-1) == y).sum()

  def component_fns(self) -> dict:
    """Zero-argument callables for the parts of the step on batch 0, as in train_step.py's
    JAX side: 'forward' (eval, no grad), 'input_grad' (one attack step's gradient, eval)
    and 'train_grad' (train-mode forward + backward to the parameters, no update)."""
    b = self.batch_size
    idx = self.order[:b]
    x = (self.images[idx].float() / 255.0).contiguous(memory_format=self.memory_format)
    y = self.labels[idx]

    def forward():
      self.model.eval()
      with torch.no_grad():
        self._logits(x)
      self.sync()

    def input_grad():
      self.model.eval()
      xx = x.clone().requires_grad_(True)
      torch.autograd.grad(F.cross_entropy(self._logits(xx), y, reduction='sum'), xx)
      self.sync()

    def train_grad():
      self.model.train()
      self.optimizer.zero_grad(set_to_none=True)
      F.cross_entropy(self._logits(x), y).backward()
      self.sync()

    return {'forward': forward, 'input_grad': input_grad, 'train_grad': train_grad}

  def sync(self) -> None:
    if self.device.type == 'cuda':
      torch.cuda.synchronize(self.device)


def versions() -> dict:
  return {'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
          'torch_device': str(default_device())}
