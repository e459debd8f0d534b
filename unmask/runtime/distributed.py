"""Process-rank helpers: the same code runs alone or as one rank of a torchrun job.

Without an initialised process group every helper is the single-process answer (rank 0 of 1,
main, reductions are identities), so the trainer needs no branches for it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 alone logs, writes metrics and saves checkpoints."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place, and returned); the identity in one process."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


_host_group = None  # a gloo group for host-side values (no CUDA stream sync on NCCL jobs)


def _host_all_reduce(value: torch.Tensor, op) -> torch.Tensor:
    """All-reduce a CPU tensor over a gloo group: on GPUs it waits for the other ranks to
    arrive, not for the device."""
    global _host_group
    if _host_group is None:
        _host_group = (dist.group.WORLD if dist.get_backend() == "gloo"
                       else dist.new_group(backend="gloo"))
    dist.all_reduce(value, op=op, group=_host_group)
    return value


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank (every rank must call it at the same point); the
    flag itself in one process."""
    if not is_distributed():
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32)
    return bool(_host_all_reduce(value, dist.ReduceOp.MAX).item())


def agree_mean(value: float) -> float:
    """The ranks' mean of a host-side number, the same on every rank (every rank must call it
    at the same point); the number itself in one process."""
    if not is_distributed():
        return value
    total = _host_all_reduce(torch.tensor([value], dtype=torch.float64), dist.ReduceOp.SUM)
    return float(total.item()) / world_size()


def init_from_env() -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); NCCL on CUDA, else gloo.

    Returns whether this process is one rank of several. Safe to call twice.
    """
    import os

    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def local_device(name: str) -> str:
    """Each rank's own GPU (cuda:LOCAL_RANK) under torchrun; `name` otherwise."""
    import os

    if is_distributed() and torch.cuda.is_available() and name in ("auto", "cuda"):
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return name


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    global _host_group
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
    _host_group = None


def broadcast_object(value):
    """Rank 0's `value` on every rank (e.g. a measured precision choice, so all ranks agree)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
