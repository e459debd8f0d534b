"""Shakespeare character diffusion with 256-character windows, for CPU training.

Everything (text, stages, seed, ...) is data/shakespeare_char_diffusion's; only the block size
differs, because a dataset fixes its block size (seed 000) and 1024-character windows make a
CPU step about ten times slower. Parsed, never executed.
"""

BASE_CONFIG = '../shakespeare_char_diffusion/training_config.py'
BLOCK_SIZE = 256
