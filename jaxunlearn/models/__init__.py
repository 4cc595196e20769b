"""Generator, discriminator and classifier modules (Flax Linen)."""

from jaxunlearn.models.dcgan import Discriminator, Generator
from jaxunlearn.models.layers import ConvTranspose, conv_transpose

__all__ = ["ConvTranspose", "Discriminator", "Generator", "conv_transpose"]
