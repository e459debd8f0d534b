"""Token classification: unmasking / diffusion training (seed 001's Quick Start).

    python data/shakespeare_char_diffusion/prepare.py
    python train_run.py config/token_classifier.py
"""

dataset = 'shakespeare_char_diffusion'  # Dataset with masking support
model_mode = 'token_classifier'         # Per-token classification
training_type = 'unmasking'             # Curriculum-based unmasking
batch_size = 16
max_iters = 8000
out_dir = 'out/token_classifier'
