"""Generators: the protocol, DCGAN, diffusion models and text-to-image pipelines."""

from synthworth.generators.base import Generator, load_generator

__all__ = ["Generator", "load_generator"]
