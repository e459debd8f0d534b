"""CPU training with a reduced model (seed 001's "CPU Training").

    python data/shakespeare_char_diffusion_256/prepare.py
    python train_run.py config/cpu_training.py --max_iters=50
"""

# A dataset fixes its block size (seed 000), so the CPU-sized context of seed 001's example
# (block_size = 256) needs the 256-character variant of shakespeare_char_diffusion: the same
# text, stages and seed (its training_config.py names the original as BASE_CONFIG).
dataset = 'shakespeare_char_diffusion_256'
training_type = 'unmasking'
device = 'cpu'
compile = False
batch_size = 8
block_size = 256
n_layer = 4
n_head = 4
n_embd = 128
max_iters = 10000
learning_rate = 5e-4
eval_interval = 250
eval_iters = 4       # validation batches per validation stage (4 x 8 = 32 fixed samples each)
log_interval = 10
out_dir = 'out/cpu_training'
