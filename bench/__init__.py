"""GAN stabilizer bench: a harness that compares GAN training-stabilization methods."""

__version__ = "0.1.0"
