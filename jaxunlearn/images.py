"""The single image convention of jaxunlearn and image-grid output.

Every image inside the library is float32 NHWC in [-1, 1]. Real data enter through
:func:`uint8_to_model` (MNIST is padded 28 -> 32 with the background value -1) and
leave through :func:`model_to_uint8`, ``round(clip((x + 1) * 127.5, 0, 255))``.
Metric code never rescales on its own.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

MODEL_RESOLUTION = 32


def uint8_to_model(images: np.ndarray, resolution: int = MODEL_RESOLUTION) -> np.ndarray:
  """uint8 (N, h, w, C) in 0..255 -> float32 (N, resolution, resolution, C) in [-1, 1].

  Smaller images are centred and padded with -1 (black), as MNIST 28 -> 32.
  """
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f"expected uint8 NHWC images, got {images.dtype} {images.shape}")
  x = images.astype(np.float32) / 127.5 - 1.0
  pad_h, pad_w = resolution - x.shape[1], resolution - x.shape[2]
  if pad_h < 0 or pad_w < 0:
    raise ValueError(f"images {x.shape[1:3]} are larger than the model resolution {resolution}")
  if pad_h or pad_w:
    x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                   (0, 0)), constant_values=-1.0)
  return x


def model_to_uint8(images) -> np.ndarray:
  """float NHWC in [-1, 1] -> uint8 NHWC, ``round(clip((x + 1) * 127.5, 0, 255))``."""
  x = np.asarray(images, dtype=np.float32)
  return np.round(np.clip((x + 1.0) * 127.5, 0.0, 255.0)).astype(np.uint8)


def make_grid(images, ncol: int = 8, pad: int = 2) -> np.ndarray:
  """Tiles (N, H, W, C) model images into one uint8 (rows*(H+pad)+pad, ..., 3) array."""
  x = model_to_uint8(images)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  n, h, w, c = x.shape
  nrow = -(-n // ncol)
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, k = divmod(i, ncol)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = x[i]
  return grid


def save_grid(path: str, images, ncol: int = 8) -> None:
  """Writes a PNG grid of model images atomically (temp file + rename)."""
  tmp = f"{path}.tmp.png"
  Image.fromarray(make_grid(images, ncol)).save(tmp)
  os.replace(tmp, path)


def save_side_by_side(path: str, left, right, ncol: int = 8, gap: int = 8) -> None:
  """Writes two grids of the same latents next to each other: before left, after right."""
  a, b = make_grid(left, ncol), make_grid(right, ncol)
  gap_block = np.full((a.shape[0], gap, 3), 255, np.uint8)
  tmp = f"{path}.tmp.png"
  Image.fromarray(np.concatenate([a, gap_block, b], axis=1)).save(tmp)
  os.replace(tmp, path)
