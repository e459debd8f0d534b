"""Dataset-specific training configuration for Shakespeare character diffusion (seed 000).

These are properties of the data, not training hyperparameters: every run on this dataset
uses these stages and this block size. Edit, then run `python prepare.py` again (a run refuses
data prepared from an older version of this file). Only `NAME = literal` lines: the file is
parsed, never executed.

Stage types (unmask/noise/stages.py):
  sticky  target_masked_ratio of each window is masked, grown in rounds: a position is
          masked with p1_probability when no neighbour is masked (starts a hole) and with
          p2_probability when one is (grows a hole), so p2 > p1 makes word- and phrase-sized
          holes. Exactly ceil(ratio * BLOCK_SIZE) positions end up masked.
  random  each window draws its own ratio r ~ U(0, max_masked_ratio), then masks each
          position independently with probability r.
Training advances to the next stage after val_loss_stale_count evaluations without a new
best validation loss (the mean loss over all VALIDATION_STAGES).
"""

TEXT_SOURCE = 'tinyshakespeare'  # a corpus shipped with unmask, or a text file in this folder

# Curriculum: more of the text masked, in longer holes, stage after stage. The first two are
# seed 000's; the last covers every ratio up to a fully masked window (what sampling starts from).
UNMASKING_STAGES = [
    {'type': 'sticky', 'target_masked_ratio': 0.4, 'p1_probability': 0.15, 'p2_probability': 0.3, 'val_loss_stale_count': 6},
    {'type': 'sticky', 'target_masked_ratio': 0.6, 'p1_probability': 0.1, 'p2_probability': 0.5, 'val_loss_stale_count': 8},
    {'type': 'sticky', 'target_masked_ratio': 0.7, 'p1_probability': 0.05, 'p2_probability': 0.6, 'val_loss_stale_count': 8},
    {'type': 'sticky', 'target_masked_ratio': 0.8, 'p1_probability': 0.05, 'p2_probability': 0.7, 'val_loss_stale_count': 10},
    {'type': 'sticky', 'target_masked_ratio': 0.85, 'p1_probability': 0.03, 'p2_probability': 0.8, 'val_loss_stale_count': 10},
    {'type': 'sticky', 'target_masked_ratio': 0.9, 'p1_probability': 0.02, 'p2_probability': 0.9, 'val_loss_stale_count': 12},
    {'type': 'sticky', 'target_masked_ratio': 0.95, 'p1_probability': 0.02, 'p2_probability': 0.95, 'val_loss_stale_count': 12},
    {'type': 'random', 'max_masked_ratio': 1.0, 'val_loss_stale_count': 15},
]

# Fixed validation masks, scored at every evaluation whatever the current stage.
VALIDATION_STAGES = [
    {'type': 'sticky', 'target_masked_ratio': 0.2, 'p1_probability': 0.3, 'p2_probability': 0.0},
    {'type': 'sticky', 'target_masked_ratio': 0.4, 'p1_probability': 0.15, 'p2_probability': 0.3},
    {'type': 'sticky', 'target_masked_ratio': 0.5, 'p1_probability': 0.05, 'p2_probability': 0.95},
    {'type': 'sticky', 'target_masked_ratio': 0.6, 'p1_probability': 0.1, 'p2_probability': 0.5},
    {'type': 'sticky', 'target_masked_ratio': 0.7, 'p1_probability': 0.05, 'p2_probability': 0.6},
    {'type': 'sticky', 'target_masked_ratio': 0.8, 'p1_probability': 0.05, 'p2_probability': 0.7},
    {'type': 'sticky', 'target_masked_ratio': 0.85, 'p1_probability': 0.03, 'p2_probability': 0.8},
    {'type': 'sticky', 'target_masked_ratio': 0.9, 'p1_probability': 0.02, 'p2_probability': 0.9},
    {'type': 'sticky', 'target_masked_ratio': 0.95, 'p1_probability': 0.02, 'p2_probability': 0.95},
    {'type': 'random', 'max_masked_ratio': 0.2},
    {'type': 'random', 'max_masked_ratio': 0.4},
    {'type': 'random', 'max_masked_ratio': 0.6},
    {'type': 'random', 'max_masked_ratio': 0.8},
    {'type': 'random', 'max_masked_ratio': 1.0},
]

# Dataset-specific parameters (NOT training hyperparameters)
BLOCK_SIZE = 1024                    # CONSTRAINT: a run's block_size must match this exactly
USE_PARAGRAPH_BOUNDARIES = True      # windows start right after a blank line (a new speech)
USE_ALL_STAGES_FOR_TRAINING = True   # each sample uses one of stages 0..current, uniformly
VALIDATION_SAMPLES_PER_STAGE = 100   # fixed windows, the same for every validation stage

# Prepared training data and cache sizes
PREPARED_TRAINING_SAMPLES = 4096     # pre-generated samples; later ones are made on the fly
PREPARED_SAMPLES_PER_FILE = 1024     # samples per prepared_batches/train_XXXXX.safetensors
BATCH_CACHE_SIZE = 1024              # prepared samples the loader reads from disk at a time

SEED = 1337                          # everything prepared is a pure function of this
