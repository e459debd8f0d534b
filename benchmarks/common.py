"""Shared helpers for the benchmark scripts: machine description and a tiny timer."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import date

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}, Python {platform.python_version()}")


def header(title: str) -> None:
    print(f"# {title}")
    print(f"date: {date.today().isoformat()}")
    print(f"machine: {machine()}")
    print(f"command: {' '.join([os.path.relpath(sys.executable)] + sys.argv)}")
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=False).stdout.strip()
        print(f"commit: {rev or 'unknown'}")
    except OSError:
        pass


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
