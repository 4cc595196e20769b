"""GAN state, pure update steps and the training loop."""

from jaxunlearn.train.gan import GAN, GANState, d_step, g_step, make_gan, train_step

__all__ = ["GAN", "GANState", "d_step", "g_step", "make_gan", "train_step"]
