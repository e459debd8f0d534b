"""Language modelling: next-token prediction (seed 001's Quick Start).

    python data/shakespeare_char/prepare.py
    python train_run.py config/language_model.py
"""

dataset = 'shakespeare_char'           # General text dataset
model_mode = 'language_model'          # Next-token prediction
batch_size = 16
max_iters = 5000
learning_rate = 1e-3
out_dir = 'out/language_model'
