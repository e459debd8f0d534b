"""`unmask proofread` on a long text: corrupt a stretch of validation text, proofread it whole.

The repair evaluation (`unmask eval --repair`) scores 64 separate passages of one context
each, whose edge characters see context on one side only; `unmask proofread` reads any length
in half-overlapping windows, so every character but the text's own ends sees at least a
quarter of a context on each side. This measures what that buys on the same kind of
corruption (a share --rate of characters swapped for random other ones, corrupt_text_ids,
seeded), and the command's speed:

    .venv/bin/python benchmarks/proofread.py RUN [--chars 16384] [--rate 0.10]
        [--prior-rate 0.03 ...] [--proofreader channel|direct|remask] [--change-margin 1] [--seed 0]
        [--dtype float32]

Prints, per prior rate, the character error rate before and after, precision/recall/F1 of the
changed characters and characters per second; JSON on the last line.
"""

from __future__ import annotations

import argparse
import json

import torch
from common import Timer, header

from unmask.data.dataset import Dataset
from unmask.eval.repair_metrics import char_error_rate, detection_scores
from unmask.model.pretrained import INFERENCE_PRECISIONS, load_pretrained
from unmask.noise.corruption import corrupt_text_ids
from unmask.sampling.proofread import PROOFREADERS, proofread_pretrained, resolve_change_margin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--chars", type=int, default=16384,
                        help="characters from the start of the validation split")
    parser.add_argument("--rate", type=float, default=0.10)
    parser.add_argument("--prior-rate", type=float, nargs="+", default=[0.03])
    parser.add_argument("--proofreader", default="channel", choices=tuple(PROOFREADERS))
    parser.add_argument("--change-margin", type=float, default=None,
                        help="remask, direct: unmask proofread --change-margin")
    parser.add_argument("--seed", type=int, default=0, help="corruption draw")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=INFERENCE_PRECISIONS,
                        help="unmask proofread --dtype (default float32: `unmask eval "
                             "--repair`'s arithmetic)")
    args = parser.parse_args()
    args.change_margin = resolve_change_margin(args.proofreader, args.change_margin)
    torch.set_num_threads(args.threads)
    header("unmask proofread: a long corrupted validation stretch, proofread whole")
    pre = load_pretrained(args.run, "cpu")
    tok = pre.tokenizer
    clean = Dataset.load(pre.meta["dataset_dir"]).val[: args.chars].long()[None]
    corrupted, replaced = corrupt_text_ids(clean, args.rate, tok.vocab_size,
                                           torch.Generator().manual_seed(args.seed))
    text = tok.decode(corrupted[0].tolist())
    rows = []
    for prior in args.prior_rate:
        with Timer() as timer:
            result = proofread_pretrained(pre, text, proofreader=args.proofreader,
                                          prior_rate=prior, dtype=args.dtype,
                                          change_margin=args.change_margin)
        fixed = torch.tensor(tok.encode(result["text"]))[None]
        d = detection_scores(fixed != corrupted, replaced)
        row = {"prior_rate": prior, "dtype": result["precision"], "chars": clean.size(1),
               "cer_before": round(char_error_rate(corrupted, clean), 4),
               "cer_after": round(char_error_rate(fixed, clean), 4),
               "precision": round(d["precision"], 3), "recall": round(d["recall"], 3),
               "f1": round(d["f1"], 3), "seconds": round(timer.seconds, 1),
               "chars_per_second": round(clean.size(1) / timer.seconds)}
        rows.append(row)
        knob = (f"prior {prior}" if args.proofreader == "channel"
                else f"margin {args.change_margin}")
        print(f"{args.proofreader}, {knob}: CER {row['cer_before']:.2%} -> {row['cer_after']:.2%}, "
              f"F1 {row['f1']:.3f} (P {row['precision']:.3f} R {row['recall']:.3f}), "
              f"{row['seconds']} s, {row['chars_per_second']} chars/s ({row['dtype']})")
    print(json.dumps({"run": args.run, "proofreader": args.proofreader,
                      "change_margin": args.change_margin, "rate": args.rate,
                      "seed": args.seed, "rows": rows}))


if __name__ == "__main__":
    main()
