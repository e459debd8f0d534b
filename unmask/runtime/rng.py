"""Random state: global seeding, saved RNG state for exact resume, and derived seeds."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch

# ----------------------------------------------------------------------------- randomness


def derive_seed(seed: int, *keys: int | str) -> int:
    """A well-mixed 63-bit seed for the stream named by `keys` (numpy's SeedSequence).

    Every random stream of a run is derive_seed(train.seed, purpose, rank), e.g.
    ("noise", 0) for rank 0's masking draws: streams never overlap, adding one never shifts
    another, and each rank of a distributed run draws its own. A string key is hashed to a
    stable integer (CRC-32), so names stay readable in the code.
    """
    ints = tuple(zlib.crc32(k.encode("utf-8")) if isinstance(k, str) else int(k) for k in keys)
    state = np.random.SeedSequence(seed, spawn_key=ints).generate_state(1, dtype=np.uint64)[0]
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


def restore_rank_rng(state: dict, seed: int, step: int, rank: int, world_size: int) -> None:
    """A resumed rank's global RNG: its own saved one; from a run with another number of
    ranks, rank 0's, and a fresh dropout stream of its own for every other rank."""
    saved = state.get("rank_rng", [])
    if len(saved) == world_size > 1:
        set_rng_state(saved[rank])
        return
    set_rng_state(state["rng"])
    if rank > 0:
        torch.manual_seed(derive_seed(seed, "dropout", rank, step))


def seeded_generator(seed: int, *keys: int | str, device: torch.device | str = "cpu"
                     ) -> torch.Generator:
    """A generator (CPU by default) for the stream named by (seed, *keys); see derive_seed."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))
