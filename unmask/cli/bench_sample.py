"""`unmask bench-sample`: quality and speed of each sampling policy against the step budget."""

from __future__ import annotations

import json
from pathlib import Path

from unmask.cli.errors import reject_extra

NAME = "bench-sample"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="judge NLL, entropy, characters/s and network calls/char of "
                                  "every sampling policy against the number of steps (table, "
                                  "JSON and PNG plot)")
    p.add_argument("checkpoint")
    p.add_argument("--judge", help="language_model checkpoint scoring the samples (default: a "
                                   "run named `judge` beside this one; 'none': no judge)")
    p.add_argument("--data", help="dataset dir for the reference text (default: the model's)")
    p.add_argument("--policies", nargs="+", metavar="POLICY",
                   help="samplers to compare, each NAME or NAME:key=value:... with keys "
                        "temperature, top_k, top_p, block_length, threshold, eta, gumbel64, "
                        "position_decay "
                        "(e.g. confidence:block_length=16 threshold:threshold=0.8); default: "
                        "every sampler that fits the checkpoint")
    p.add_argument("--steps", type=int, nargs="+", help="step budgets (default 8 16 ... 1024, "
                                                        "capped by the length)")
    p.add_argument("--batch-sizes", type=int, nargs="+", help="default: 1 32; the largest is "
                                                              "also the quality sample")
    p.add_argument("--length", type=int, help="positions (tokens) per sample; characters "
                   "for a character model (default: the context)")
    p.add_argument("--temperature", type=float, help="for every policy (default: checkpoint's)")
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: RUN/bench_sample)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: steps 2 4, batch sizes 1 2, 16 characters")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    from unmask.data.dataset import Dataset
    from unmask.eval import bench_sample as bench
    from unmask.eval.judge import find_judge, load_judge
    from unmask.model.pretrained import load_pretrained

    pre = load_pretrained(args.checkpoint, args.device)
    settings = dict(bench.QUICK) if args.quick else {}
    if args.steps:
        settings["steps"] = tuple(args.steps)
    if args.batch_sizes:
        settings["batch_sizes"] = tuple(args.batch_sizes)
    if args.length:
        settings["length"] = args.length
    common = {k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k),
                                ("top_p", args.top_p)) if v is not None}
    judge_path = None if (args.judge or "").lower() == "none" else (
        args.judge or find_judge(pre.path))
    judge = load_judge(judge_path, args.device) if judge_path else None
    dataset_dir = args.data or pre.meta.get("dataset_dir")
    dataset = Dataset.load(dataset_dir) if dataset_dir and Path(dataset_dir).is_dir() else None
    policies = [bench.parse_policy(p) for p in args.policies] if args.policies else None
    result = bench.run_bench(pre, policies=policies, judge=judge, dataset=dataset,
                             seed=args.seed, common=common, **settings)
    out = args.out or str(Path(pre.path).parent / "bench_sample")
    paths = bench.write_report(result, out)
    if args.json:
        print(json.dumps(result))
    else:
        print(bench.markdown(result))
        print("written: " + ", ".join(paths.values()))
    return 0
