"""Random state: global seeding, saved RNG state for exact resume, and derived seeds."""

from __future__ import annotations

import random

import numpy as np
import torch

# ----------------------------------------------------------------------------- randomness


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed for the stream named by `keys` (numpy's SeedSequence)."""
    state = np.random.SeedSequence(seed, spawn_key=keys).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Global RNG state (dropout draws from it), for exact resume."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seeded_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator for the stream named by (seed, *keys) (see derive_seed)."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))
