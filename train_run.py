"""Seed-compatible training entry point (seeds 000/001), nanoGPT style:

    python train_run.py config/shakespeare_diffusion/experiment1.py
    python train_run.py config/cpu_training.py --max_iters=50

Config files are read, never executed; names and rules are in unmask/config/seed_names.py and unmask/cli/seed_run.py. The
same runs work as `unmask train CONFIG.py [--key=value ...]`; both use unmask's one Trainer.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a fresh clone without `pip install -e .`

from unmask.cli.seed_run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
