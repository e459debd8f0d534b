"""Apple Silicon (seed 001's "Apple Silicon (MPS)").

    python data/shakespeare_char_diffusion/prepare.py
    python train_run.py config/mps_training.py
"""

dataset = 'shakespeare_char_diffusion'
training_type = 'unmasking'
device = 'mps'
compile = False
batch_size = 12
# Seed 001's example says 512, but the dataset fixes BLOCK_SIZE = 1024 (seed 000); a different
# value stops with "Block size mismatch". config/cpu_training.py shows the 256 variant.
block_size = 1024
max_iters = 25000
out_dir = 'out/mps_training'
