"""unmask: train, sample, evaluate and watch masked (discrete) diffusion language models.

From Python: `unmask.load(RUN)` gives a `Model` to generate, infill and proofread with
(unmask/api.py). `import unmask` alone does not import torch; the first use of `load` does.
"""

__version__ = "0.1.0"
__all__ = ["load", "Model"]


def __getattr__(name: str):
    if name in __all__:
        from unmask import api

        return getattr(api, name)
    raise AttributeError(f"module 'unmask' has no attribute '{name}'")
