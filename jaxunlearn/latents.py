"""Fixed latent banks (evaluation.md §0), identical for every model in a comparison.

Each bank is drawn from its own fixed seed with NumPy's PCG64 ``standard_normal`` (float32,
not ``jax.random``, whose bits depend on JAX configuration) and checked against the SHA-256
recorded below, so a bank can never change silently between versions or machines: if a
future NumPy changed the stream, loading a bank fails loudly instead.
"""

from __future__ import annotations

import hashlib

import numpy as np

BANKS = {"eval": (10_000, 101), "ref": (10_000, 102), "val": (2_000, 103), "stop": (2_000, 104),
         "grid": (64, 105)}
# sha256 of the float32 bytes, per (bank, latent dim).
EXPECTED_SHA256 = {
    ('eval', 100): "7ae7fb262862a1154093de32af108f5fac8bbd245cb2ece3809b1f35c6304104",
    ('ref', 100): "4c236c3317810ba4cc63df4a537d8cda0028f20ddc750f90d8b77625da36d58c",
    ('val', 100): "f36e0880ff1cfd669e520e97020b47f600a0e9fef976f1007b45bcd8a3d2e57b",
    ('stop', 100): "b4be865efc044e5158c8440aa5b857e3735bdf38422636c9a3a453e0ec95cc53",
    ('grid', 100): "67a299116caf3fecbc857a0cc623b615110244427e8628b4bf4e943158a0d6f0",
    ('eval', 128): "95bd803d4c67153875c525cc60360715574174ae0a6d1f2dd541e5a8e1dd5fe6",
    ('ref', 128): "eb5f3ccaa7537dec7ad4951985e49887e7fd7d35d3a02fa64b8751ba739e5ca5",
    ('val', 128): "cb741c079850a37934e1e2fdf7d097fe7928e0f718e34c5245bc40b3d4607cfa",
    ('stop', 128): "e0321421c79e9261345b9aaf6db2168678792f76a29c3fd0ea25815ddeb57c64",
    ('grid', 128): "232965329ab37813814f47ab915f33ecfcd2af0192bc3ddc1e7ea45af77e5eba",
}


def latent_bank(name: str, dim: int) -> np.ndarray:
  """The bank ``name`` (eval, ref, val, stop, grid) for latent size ``dim``: float32 (n, dim)."""
  if name not in BANKS:
    raise ValueError(f"unknown latent bank {name!r}; valid: {', '.join(BANKS)}")
  size, seed = BANKS[name]
  z = np.random.Generator(np.random.PCG64([seed, dim])).standard_normal((size, dim), np.float32)
  expected = EXPECTED_SHA256.get((name, dim))
  if expected is not None and hashlib.sha256(z.tobytes()).hexdigest() != expected:
    raise RuntimeError(f"latent bank {name!r} (dim {dim}) does not match its recorded hash: this "
                       "NumPy draws a different stream; results would not be comparable")
  return z
