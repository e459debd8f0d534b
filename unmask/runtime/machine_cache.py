"""What this machine measured once, kept per machine: the CPU probes' cache files.

The start-up probes (precision, threads, torch.compile) time real work; their figures depend
on the CPU, its feature flags, the torch version and the thread count, so they are cached
under a key made of those, in `$XDG_CACHE_HOME/unmask/<name>.json` (default `~/.cache/unmask/`).
`UNMASK_PRECISION_CACHE=0` turns every probe cache off (each start measures again).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import date
from pathlib import Path

import torch

CACHE_ENV = "UNMASK_PRECISION_CACHE"


def cpuinfo_field(*names: str) -> str | None:
    """The first /proc/cpuinfo value whose field starts with one of `names` (None off Linux)."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith(names) and ":" in line), None)


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def _cpu_flags_digest() -> str:
    """Virtual machines often report a generic "Intel(R) Xeon(R) Processor" for CPUs with and
    without native bf16, so the key also carries a digest of the CPU feature flags."""
    flags = " ".join(sorted((cpuinfo_field("flags", "Features") or "").split()))
    return hashlib.sha1(flags.encode()).hexdigest()[:8] if flags else "noflags"


def machine_key() -> str:
    """CPU model + feature flags + torch version + thread count: what the timings depend on."""
    return (f"{cpu_model()} | flags {_cpu_flags_digest()} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads")


def use_cache() -> bool:
    return os.environ.get(CACHE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_path(name: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "unmask" / f"{name}.json"


def read_cache(name: str) -> dict:
    """{key: {figures..., "date"}}; {} when missing or unreadable."""
    try:
        data = json.loads(cache_path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(name: str, key: str, fields) -> dict[str, float] | None:
    """`key`'s figures in cache `name`, when the caches are on and it holds every one of
    `fields`; else None (measure)."""
    hit = read_cache(name).get(key) if use_cache() else None
    if not isinstance(hit, dict) or not set(fields) <= hit.keys():
        return None
    return {field: float(hit[field]) for field in fields}


def write_cache(name: str, key: str, figures: dict[str, float]) -> None:
    """Adds or replaces `key`'s figures (atomically) when the caches are on; a read-only home
    is not an error."""
    if not use_cache():
        return
    path = cache_path(name)
    entries = read_cache(name)
    entries[key] = {**{k: round(v, 3) for k, v in figures.items()},
                    "date": date.today().isoformat()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def this_machine(name: str) -> dict[str, dict]:
    """`name`'s cached figures measured on this machine (at this thread count), by the rest of
    their key (the probe and the model shape); what `unmask info` lists."""
    prefix = f"{machine_key()} | "
    return {key.removeprefix(prefix): figures for key, figures in read_cache(name).items()
            if key.startswith(prefix) and isinstance(figures, dict)}
