"""The book's BPE on Frankenstein: characters per token, bits per byte, embedding share.

    .venv/bin/python benchmarks/book_tokenizer.py [BOOK] [--run RUN_DIR]

For target coverages 0.6 .. 0.95 (and characters, for comparison) it trains the tokenizer
on the book's running text (as `unmask book` does) and reports the vocabulary, characters and
UTF-8 bytes per token, the exact round trip, and the unigram entropy of the tokens in bits per
byte (what a model that learned only token frequencies would score: an upper reference for
any trained model's bits per byte). The embedding share of parameters is computed with
model/sizing.py (equal to the real model's count, tested) for the book presets' shapes, and
for a GPT-2-sized vocabulary (50,257) as seed 004's uncompressed baseline.

With --run, the validation likelihood of that trained run in bits per byte (`unmask eval`:
the ELBO at 8 stratified times over the whole validation split).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import header  # noqa: E402
from unmask.config.book import BOOK_PRESETS, to_run_config  # noqa: E402
from unmask.data.book.pipeline import PARAGRAPH_END  # noqa: E402
from unmask.model.sizing import parameter_breakdown  # noqa: E402
from unmask.text.reader import load_text  # noqa: E402
from unmask.text.segment import segment_book  # noqa: E402
from unmask.text.tokenizers import CharTokenizer  # noqa: E402
from unmask.text.tokenizers.bpe import BPETokenizer  # noqa: E402

GPT2_VOCAB = 50257


def unigram_bits_per_byte(ids: list[int], n_bytes: int) -> float:
    counts = Counter(ids)
    n = len(ids)
    bits = -sum(c * math.log2(c / n) for c in counts.values())
    return bits / n_bytes


def embedding_shares(extended_vocab: int) -> dict[str, float]:
    out = {}
    for name, make in BOOK_PRESETS.items():
        model = to_run_config(make(), max_iters=1).model
        model.vocab_size = extended_vocab
        parts = parameter_breakdown(model)
        shape = f"{model.n_layer}x{model.n_embd}"
        out[f"{name} ({shape})"] = round(parts["embeddings"] / parts["total"], 4)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("book", nargs="?", default="frankenstein")
    p.add_argument("--run", help="a trained `unmask book` run: report its val bits per byte")
    args = p.parse_args()
    header(f"book tokenizer: {args.book}")
    name, raw = load_text(args.book)
    text = "".join(par.span.text + PARAGRAPH_END for par in segment_book(raw))
    n_bytes = len(text.encode("utf-8"))
    rows = []
    for coverage in (0.6, 0.7, 0.8, 0.9, 0.95, "char"):
        start = time.perf_counter()
        tok = (CharTokenizer.from_text(text) if coverage == "char"
               else BPETokenizer.train(text, target_coverage=coverage))
        seconds = time.perf_counter() - start
        ids = tok.encode(text)
        rows.append({
            "tokenizer": "char" if coverage == "char" else f"bpe coverage {coverage}",
            "vocab_size": tok.vocab_size,
            "train_seconds": round(seconds, 2),
            "round_trip_book": tok.decode(tok.encode(raw)) == raw,
            "round_trip_running_text": tok.decode(ids) == text,
            "characters_per_token": round(len(text) / len(ids), 3),
            "bytes_per_token": round(n_bytes / len(ids), 3),
            "unigram_bits_per_byte": round(unigram_bits_per_byte(ids, n_bytes), 4),
            "embedding_share": embedding_shares(tok.extended_vocab_size),
        })
    report = {"book": name, "characters": len(text), "bytes": n_bytes, "tokenizers": rows,
              "embedding_share_gpt2_vocab_50257": embedding_shares(GPT2_VOCAB + 7)}
    if args.run:
        from unmask.eval.report import evaluate_checkpoint
        result = evaluate_checkpoint(args.run, device="cpu", n_samples=0)
        report["run"] = {k: result.get(k) for k in ("checkpoint", "elbo_nats_per_char",
                                                    "bits_per_byte", "val_tokens_scored")}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
