"""itgan_jax: faithful JAX/Flax reproductions of Improved-GAN, Progressive GAN and RP-GAN."""
__version__ = "0.1.0"
