"""Train `unmask book` on a book and measure whether its samples read like the book (issue 10).

    .venv/bin/python benchmarks/book_quality.py frankenstein --preset debug
    .venv/bin/python benchmarks/book_quality.py frankenstein --run out/book/frankenstein-debug
    .venv/bin/python benchmarks/book_quality.py --run RUN --sampler random:top_p=0.8

Trains (unless --run names a finished run), timing the whole command, then draws
--samples texts with the checkpoint's own sampler settings and reports:

- word_validity: share of the samples' words (letter runs, lower-cased) that occur in the
  book (its whole running text; the training split's figure is given too);
- word unigram entropy of the samples against the book's: the plug-in entropy of n words is
  biased low for small n, so the reference is the mean over 20 random excerpts of the book
  with the same number of words in as many pieces (the full book's figure is given too);
  target: within 10 %;
- character unigram entropy, samples vs the whole book;
- garbage: special-token names ([MASK], [PAD], [SEP], ...) and U+FFFD (a byte sequence that
  is not UTF-8) in the decoded samples; target: none.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import header  # noqa: E402
from unmask.data.dataset import Dataset  # noqa: E402
from unmask.eval.bench_sample import parse_policy  # noqa: E402
from unmask.model.pretrained import load_pretrained  # noqa: E402
from unmask.sampling.registry import sample_texts  # noqa: E402
from unmask.text.tokenizers.base import SPECIALS  # noqa: E402

WORD = re.compile(r"[A-Za-z]+")


def entropy_bits(items) -> float:
    counts = Counter(items)
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def matched_entropy(book_words: list[str], sizes: list[int], draws: int = 20) -> float:
    """Mean word entropy of `len(sizes)` random book excerpts of these word counts."""
    rng = random.Random(0)
    values = []
    for _ in range(draws):
        words = []
        for n in sizes:
            start = rng.randrange(0, max(1, len(book_words) - n))
            words += book_words[start:start + n]
        values.append(entropy_bits(words))
    return sum(values) / len(values)


def measure(run: str, n_samples: int, seed: int, sampler: str | None = None) -> dict:
    pre = load_pretrained(run, "cpu")
    if sampler:  # another policy / settings than the checkpoint's, e.g. random:top_p=0.8
        spec = parse_policy(sampler)
        pre.config.sample = dataclasses.replace(pre.config.sample, policy=spec.name,
                                                **spec.options)
    data = Dataset.load(pre.meta["dataset_dir"])
    tok = data.tokenizer
    book = tok.decode(data.train.tolist() + data.val.tolist())
    train_words = {w.lower() for w in WORD.findall(tok.decode(data.train.tolist()))}
    book_words = [w.lower() for w in WORD.findall(book)]
    start = time.perf_counter()
    texts = sample_texts(pre, n_samples, seed=seed)
    sample_seconds = time.perf_counter() - start
    per_text = [[w.lower() for w in WORD.findall(t)] for t in texts]
    words = [w for ws in per_text for w in ws]
    known = set(book_words)
    sample_h = entropy_bits(words)
    ref_h = matched_entropy(book_words, [len(ws) for ws in per_text if ws])
    garbage = {name: sum(t.count(name) for t in texts) for _, _, name in SPECIALS}
    garbage["\\ufffd"] = sum(t.count("\ufffd") for t in texts)
    s = pre.config.sample
    return {
        "run": run, "checkpoint": pre.path, "samples": len(texts), "words": len(words),
        "sampler": {"policy": s.policy, "steps": s.steps, "length": s.length,
                    "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
                    "position_decay": s.position_decay},
        "sample_seconds": round(sample_seconds, 1),
        "word_validity": round(sum(w in known for w in words) / max(1, len(words)), 4),
        "word_validity_train_split": round(sum(w in train_words for w in words)
                                           / max(1, len(words)), 4),
        "word_entropy_bits": round(sample_h, 4),
        "book_word_entropy_bits_same_size": round(ref_h, 4),
        "book_word_entropy_bits_full": round(entropy_bits(book_words), 4),
        "word_entropy_ratio": round(sample_h / ref_h, 4) if ref_h else None,
        "char_entropy_bits": round(entropy_bits("".join(texts)), 4),
        "book_char_entropy_bits": round(entropy_bits(book), 4),
        "garbage": {k: v for k, v in garbage.items() if v},
        "example": texts[0][:400],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("book", nargs="?", default="frankenstein")
    p.add_argument("--preset", default="debug")
    p.add_argument("--out", help="run directory (default out/book/<book>-<preset>)")
    p.add_argument("--run", help="measure this finished run instead of training one")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", metavar="SPEC", help="sample with NAME[:key=value...] (as "
                   "bench-sample's --policies) instead of the checkpoint's settings")
    p.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    header(f"unmask book {args.book}: sample quality")
    run = args.run
    result = {}
    if run is None:
        run = args.out or f"out/book/{Path(args.book).stem}-{args.preset}"
        cmd = [str(Path(sys.executable).parent / "unmask"), "book", args.book, "--preset",
               args.preset, "--out", run, "--override", "training.progress=false",
               *args.override]
        print("train:", " ".join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        result["train_command_seconds"] = round(time.perf_counter() - start, 1)
    result.update(measure(run, args.samples, args.seed, args.sampler))
    ratio = result["word_entropy_ratio"]
    result["targets_met"] = {
        "word_validity>=0.85": result["word_validity"] >= 0.85,
        "word_entropy_within_10%": ratio is not None and abs(ratio - 1) <= 0.10,
        "no_garbage": not result["garbage"],
    }
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
