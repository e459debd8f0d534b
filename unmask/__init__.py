"""unmask: train, sample, evaluate and watch masked (discrete) diffusion language models."""

__version__ = "0.1.0"
