"""The autoregressive baseline against nanoGPT's CPU recipe on Tiny Shakespeare.

Trains `language_model` mode with nanoGPT's CPU recipe (4 layers, 4 heads, 128 wide, context
64, batch 12, 2,000 iterations, dropout 0, lr 1e-3 cosine to 1e-4, warmup 100), then reports
the validation loss over the WHOLE validation split (non-overlapping 65-token windows, every
next-token prediction scored), training throughput, and the word validity of 5 x 500-character
samples at temperature 0.8, top-k 200 (nanoGPT's sample.py settings).

    .venv/bin/python benchmarks/lm_baseline.py [--max-iters 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from common import Timer, header

from unmask.config.presets import resolve_config
from unmask.data.dataset import resolve_dataset
from unmask.data.windows import contiguous_windows
from unmask.eval.likelihood import causal_nll
from unmask.eval.words import vocabulary_of, word_validity
from unmask.sampling.base import final_state
from unmask.sampling.causal import generate_causal
from unmask.train.trainer import Trainer


def full_val_loss(model, dataset, block_size: int) -> float:
    """The exact NLL `unmask eval` reports for a language_model (one evaluation path)."""
    windows = contiguous_windows(dataset.val, block_size + 1)
    return causal_nll(model, windows, dataset.tokenizer.vocab_size, 256)["nll_nats_per_char"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--data", default="tinyshakespeare")
    args = parser.parse_args()
    header("language_model baseline, nanoGPT CPU recipe")
    dataset = resolve_dataset(args.data)
    cfg = resolve_config("nanogpt-cpu-lm", {"train.max_iters": args.max_iters,
                                            "train.progress": False,
                                            "train.eval_interval": args.max_iters})
    with tempfile.TemporaryDirectory() as out, Timer() as timer:
        trainer = Trainer(cfg, dataset, Path(out), log=lambda *_: None)
        result = trainer.run()
    tokens = args.max_iters * cfg.train.batch_size * cfg.model.block_size
    val = full_val_loss(trainer.model, dataset, cfg.model.block_size)
    tok = dataset.tokenizer
    state = final_state(generate_causal(
        trainer.model, vocab_size=tok.vocab_size, mask_id=tok.mask_id, length=500,
        prompt_ids=tok.encode("\n"), num_samples=5, temperature=0.8, top_k=200,
        generator=torch.Generator().manual_seed(0)))
    texts = [tok.decode(row[1:].tolist()) for row in state.tokens]
    validity, n_words = word_validity(texts, vocabulary_of(tok.decode(dataset.train.tolist())))
    print(json.dumps({
        "val_loss_full_split": round(val, 4), "val_loss_trainer_subset": round(result["val_loss"], 4),
        "train_seconds_including_evals": round(timer.seconds, 1),
        "train_loop_seconds": result["train_seconds"],
        "ms_per_iteration": round(1000 * result["train_seconds"] / args.max_iters, 1),
        "tokens_per_second": round(tokens / result["train_seconds"]),
        "word_validity": round(validity, 3), "words_scored": n_words,
        "parameters": trainer.model.num_parameters(),
    }, indent=1))
    print("--- sample ---\n" + texts[0][:300])


if __name__ == "__main__":
    main()
