"""Which recipe levers help the `cpu-demo` diffusion model at the demo's budget (issue 15)?

Each variant is `unmask train cpu-demo` with a set of dot-path overrides, run one after the
other (never two at once on a 2-core machine), all from the same seed; the table holds each
run's validation ELBO at every evaluation (the trainer's fixed subset: 96 windows x 4
stratified times, nats/char), its training time, and with `--eval` the whole validation split
scored by `unmask eval` (871 windows x 8 t points).

    .venv/bin/python benchmarks/recipe_levers.py --variant base \\
        --variant "muon:optim.name=muon" \\
        --variant "muon+qk:optim.name=muon model.qk_norm=true model.zero_init_proj=true"

A variant is NAME or NAME:KEY=VALUE KEY=VALUE ...; `--common` overrides apply to every run
(e.g. `train.threads=1 train.dtype=bfloat16`). Writes OUT/recipe_levers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import header, machine

ROOT = Path(__file__).resolve().parent.parent


def parse_variant(spec: str) -> tuple[str, list[str]]:
    name, _, rest = spec.partition(":")
    return name, [f"--{pair}" for pair in rest.split()]


def run_variant(name: str, overrides: list[str], args) -> dict:
    out = Path(args.workdir) / name
    cmd = [sys.executable, "-m", "unmask", "train", args.preset, "--data", args.data,
           "--out", str(out), "--train.progress=false",
           *[f"--{pair}" for pair in args.common], *overrides]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    curve = {line["step"]: line["val_loss"] for line in lines if "val_loss" in line}
    result = {"name": name, "overrides": overrides, "seconds": round(seconds, 1),
              "val_curve": curve, "final_val": curve[max(curve)], "best_val": min(curve.values())}
    if args.eval:
        report = subprocess.run([sys.executable, "-m", "unmask", "eval", str(out), "--json"],
                                check=True, cwd=ROOT, capture_output=True, text=True).stdout
        result["eval_elbo"] = json.loads(report)["elbo_nats_per_char"]
    print(f"{name}: val {result['final_val']:.4f} (best {result['best_val']:.4f})"
          + (f", whole split {result['eval_elbo']:.4f}" if "eval_elbo" in result else "")
          + f", {seconds:.0f} s", flush=True)
    return result


def markdown(report: dict) -> str:
    steps = sorted({int(s) for r in report["runs"] for s in r["val_curve"]})
    lines = [f"{report['machine']}; {report['date']}; command: `{report['command']}`", "",
             "| variant | overrides | " + " | ".join(f"val @ {s}" for s in steps)
             + " | whole split | seconds |", "|---" * (len(steps) + 4) + "|"]
    for r in report["runs"]:
        vals = [r["val_curve"].get(s, r["val_curve"].get(str(s))) for s in steps]
        lines.append(f"| {r['name']} | {' '.join(r['overrides']) or '(preset)'} | "
                     + " | ".join(f"{v:.4f}" if v is not None else "-" for v in vals)
                     + f" | {r.get('eval_elbo', float('nan')):.4f} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--common", nargs="*", default=[], help="KEY=VALUE for every run")
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--data", default="data/tinyshakespeare")
    parser.add_argument("--eval", action="store_true", help="also score the whole split")
    parser.add_argument("--workdir", default="out/recipe_levers")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    header("recipe levers on " + args.preset)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "command": " ".join(["python"] + sys.argv), "runs": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for spec in args.variant:
        report["runs"].append(run_variant(*parse_variant(spec), args))
        (out / "recipe_levers.json").write_text(json.dumps(report, indent=1))
        (out / "recipe_levers.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
