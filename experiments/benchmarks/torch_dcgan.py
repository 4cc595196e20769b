"""The PyTorch peer of jaxunlearn's DCGAN training step, timed by experiments.benchmark.

The same networks as jaxunlearn/models/dcgan.py (w = width):

  G: z (N, latent_dim, 1, 1) -> ConvT k4 s1 p0 -> 8w, BN, ReLU -> ConvT k4 s2 p1 -> 4w, BN, ReLU
     -> 2w, BN, ReLU -> ConvT k4 s2 p1 -> C, tanh; only the last ConvT has a bias.
  D: x (N, C, 32, 32) -> Conv k4 s2 p1 -> 2w, LReLU 0.2 -> 4w -> 8w -> Conv k4 VALID -> 1 logit;
     every conv has a bias; no batch statistics.

Initialisation N(0, 0.02) for conv weights, BN scale N(1, 0.02), zero biases; BN momentum 0.1
(PyTorch's convention for Flax's 0.9), ε = 1e-5. Loss: the non-saturating GAN loss on logits
(L_D = mean softplus(−D(x)) + mean softplus(D(G(z))), L_G = mean softplus(−D(G(z)))), Adam per
network. One training step = one D update against a fresh fake batch, then one G update against
the new D, as :func:`jaxunlearn.train.gan.train_step`.

Written as a careful PyTorch user would: D's parameters are frozen during the G update (no unused
weight gradients), gradients are set to None rather than zeroed, the fake batch of the D update is
generated without autograd, and Adam uses its fused CPU kernel where available. One difference in
bookkeeping, not in cost: PyTorch's G updates its BN running statistics in the D update's forward
pass as well (JAX discards them there).

PyTorch is optional: importing this module raises ImportError without it.

``python -m experiments.benchmarks.torch_dcgan`` serves the benchmark's peer in a process of its
own (:func:`serve`), so that PyTorch's OpenMP runtime never shares a process with JAX's threads or
with the oneDNN convolutions of ``conv_backend="onednn"`` (benchmarks/NOTES.md, attempt 25).
"""

from __future__ import annotations

import json
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F


def generator(channels: int, width: int, latent_dim: int) -> nn.Sequential:
  """G: (N, latent_dim, 1, 1) -> (N, channels, 32, 32) in [-1, 1]."""
  layers: list[nn.Module] = []
  c_in = latent_dim
  for mult, stride, pad in ((8, 1, 0), (4, 2, 1), (2, 2, 1)):
    layers += [nn.ConvTranspose2d(c_in, width * mult, 4, stride, pad, bias=False),
               nn.BatchNorm2d(width * mult, eps=1e-5, momentum=0.1), nn.ReLU()]
    c_in = width * mult
  layers += [nn.ConvTranspose2d(c_in, channels, 4, 2, 1, bias=True), nn.Tanh()]
  return nn.Sequential(*layers)


def discriminator(channels: int, width: int) -> nn.Sequential:
  """D: (N, channels, 32, 32) -> (N,) raw logits."""
  layers: list[nn.Module] = []
  c_in = channels
  for mult in (2, 4, 8):
    layers += [nn.Conv2d(c_in, width * mult, 4, 2, 1), nn.LeakyReLU(0.2)]
    c_in = width * mult
  layers += [nn.Conv2d(c_in, 1, 4, 1, 0), nn.Flatten(0)]
  return nn.Sequential(*layers)


def _init(module: nn.Module) -> None:
  if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
    nn.init.normal_(module.weight, 0.0, 0.02)
    if module.bias is not None:
      nn.init.zeros_(module.bias)
  elif isinstance(module, nn.BatchNorm2d):
    nn.init.normal_(module.weight, 1.0, 0.02)
    nn.init.zeros_(module.bias)


def num_params(module: nn.Module) -> int:
  """Trainable parameters (BN running statistics are buffers, as Flax's batch_stats)."""
  return sum(p.numel() for p in module.parameters())


def _adam(params, lr: float, b1: float, b2: float) -> torch.optim.Adam:
  try:
    return torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=1e-8, fused=True)
  except (RuntimeError, TypeError):  # a build without the fused CPU kernel
    return torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=1e-8, foreach=True)


class TorchGAN:
  """A DCGAN with Adam optimizers and the D-then-G training step (NCHW tensors)."""

  def __init__(self, *, channels: int, g_width: int, d_width: int, latent_dim: int,
               learning_rate: float, b1: float, b2: float, seed: int = 0,
               channels_last: bool = False):
    torch.manual_seed(seed)
    self.latent_dim = latent_dim
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.g = generator(channels, g_width, latent_dim).apply(_init)
    self.d = discriminator(channels, d_width).apply(_init)
    self.g.to(memory_format=self.memory_format).train()
    self.d.to(memory_format=self.memory_format).train()
    self.g_opt = _adam(self.g.parameters(), learning_rate, b1, b2)
    self.d_opt = _adam(self.d.parameters(), learning_rate, b1, b2)

  def _latents(self, n: int) -> torch.Tensor:
    z = torch.randn(n, self.latent_dim, 1, 1)
    return z.contiguous(memory_format=self.memory_format)

  def d_step(self, real: torch.Tensor) -> float:
    """One D update on L_D with a fresh fake batch of len(real); returns L_D."""
    with torch.no_grad():
      fake = self.g(self._latents(real.shape[0]))
    loss = F.softplus(-self.d(real)).mean() + F.softplus(self.d(fake)).mean()
    self.d_opt.zero_grad(set_to_none=True)
    loss.backward()
    self.d_opt.step()
    return loss.detach()

  def g_step(self, batch_size: int) -> float:
    """One G update on the non-saturating L_G (D frozen); returns L_G."""
    self.d.requires_grad_(False)
    loss = F.softplus(-self.d(self.g(self._latents(batch_size)))).mean()
    self.g_opt.zero_grad(set_to_none=True)
    loss.backward()
    self.g_opt.step()
    self.d.requires_grad_(True)
    return loss.detach()

  def train_step(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A D update, then a G update against the new D: (L_D, L_G)."""
    return self.d_step(real), self.g_step(real.shape[0])

  def real_batch(self, batch_size: int, channels: int, seed: int = 1) -> torch.Tensor:
    """A fixed (batch_size, channels, 32, 32) batch in [-1, 1] in this GAN's memory format."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, channels, 32, 32, generator=gen) * 2 - 1
    return x.contiguous(memory_format=self.memory_format)


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
  """Answers one JSON request per line until stdin closes.

  ``{"cmd": "info", "threads": T, "gan": {...TorchGAN kwargs}}`` sets the thread count and replies
  with the versions and parameter counts; ``{"cmd": "make", "batch_size": B, "channels": C}``
  builds a fresh peer and its fixed real batch; ``{"cmd": "step"}`` runs one training step and
  replies with its process CPU seconds (``cpu_s``).
  """
  peer = real = None
  kwargs = {}
  for line in stdin:
    request = json.loads(line)
    if request["cmd"] == "info":
      torch.set_num_threads(request["threads"])
      kwargs = request["gan"]
      probe = TorchGAN(**kwargs)
      reply = {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
               "parameters": {"generator": num_params(probe.g),
                              "discriminator": num_params(probe.d)},
               "adam_fused": bool(probe.d_opt.defaults.get("fused"))}
    elif request["cmd"] == "make":
      peer = TorchGAN(**kwargs)
      real = peer.real_batch(request["batch_size"], request["channels"])
      reply = {}
    else:
      cpu = time.process_time()
      peer.train_step(real)
      reply = {"cpu_s": time.process_time() - cpu}
    stdout.write(json.dumps(reply) + "\n")
    stdout.flush()


if __name__ == "__main__":
  serve()
