"""`unmask bench-sample`: quality and speed of every sampling policy against the step budget.

For each policy (a registered sampler name, optionally with request settings:
`confidence:block_length=16:temperature=1.0`) and each step budget (8, 16, ... 1024, capped by
the sample length), one batch of `max(batch_sizes)` samples is scored for quality (judge NLL
when a judge is given, character entropy, distinct-2, self-BLEU: eval/generative.py), and
every batch size is timed: characters per second (generated characters / wall time, the
model's device synchronised by reading the tokens back) and network calls per character
(forward passes / characters per row: a batched pass serves every row). Real validation
passages of the same length are scored alongside as the reference.

Writes bench.json, bench.md (the table) and bench.png (matplotlib, Agg backend: no display).
Timings depend on the machine and on what else runs on it: compare rows of one run.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unmask.errors import UserError
from unmask.eval.generative import quality, reference_texts
from unmask.sampling.base import SampleRequest
from unmask.sampling.registry import checkpoint_request, fitting_samplers, pick_sampler

DEFAULT_STEPS = (8, 16, 32, 64, 128, 256, 512, 1024)
DEFAULT_BATCH_SIZES = (1, 32)
QUICK = {"steps": (2, 4), "batch_sizes": (1, 2), "length": 16}
_FIELDS = {f.name: f.type for f in dataclasses.fields(SampleRequest)}
OPTIONS = ("temperature", "top_k", "top_p", "block_length", "threshold", "eta", "gumbel64",
           "position_decay")


@dataclass(frozen=True)
class PolicySpec:
    """A sampler name and the request settings it runs with (`label` as the user wrote it)."""

    label: str
    name: str
    options: dict = field(default_factory=dict)


def parse_policy(spec: str) -> PolicySpec:
    """'name' or 'name:key=value:key=value' with keys among OPTIONS."""
    name, *parts = spec.split(":")
    options = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in OPTIONS:
            raise UserError(f"policy '{spec}': settings look like key=value with key one of "
                            f"{', '.join(OPTIONS)}")
        kind = str(_FIELDS[key])
        try:
            if "bool" in kind:
                options[key] = value.lower() in ("1", "true", "yes")
            elif "int" in kind and "float" not in kind:
                options[key] = int(value)
            else:
                options[key] = float(value)
        except ValueError:
            raise UserError(f"policy '{spec}': {key}={value} is not a number") from None
    return PolicySpec(spec, name, options)


def steps_grid(length: int, steps=DEFAULT_STEPS) -> list[int]:
    """The budgets up to the sample length (which ends the grid when it is not in it)."""
    grid = sorted({s for s in steps if s <= length})
    if not grid or (max(steps) > length and grid[-1] != length):
        grid.append(length)
    return grid


def _timed(pre, sampler, request: SampleRequest, seed: int
           ) -> tuple[list[str], int, float, int, int]:
    """(generated texts, network calls, seconds, steps taken, step budget) of one batch."""
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    final, events = None, 0
    for final in sampler.generate(pre.model, request, generator):
        events += 1
    rows = final.tokens.tolist()  # reading back waits for the device
    seconds = time.perf_counter() - start
    n_fixed = request.n_fixed
    return ([pre.tokenizer.decode(r[n_fixed:]) for r in rows], final.network_calls, seconds,
            events, final.steps)


def run_bench(pre, *, policies: list[PolicySpec] | None = None, steps=DEFAULT_STEPS,
              batch_sizes=DEFAULT_BATCH_SIZES, length: int | None = None, judge=None,
              dataset=None, seed: int = 0, common: dict | None = None,
              progress: bool = True) -> dict:
    """The measurements (module doc) as one JSON-ready dict."""
    from tqdm import tqdm

    policies = policies or [PolicySpec(n, n) for n in fitting_samplers(pre.config)]
    batch_sizes = sorted(set(batch_sizes))
    quality_batch = batch_sizes[-1]
    block = pre.config.model.block_size
    limits = [m for p in policies
              if (m := pick_sampler(p.name, pre).max_length(block, 0)) is not None]
    longest = min(limits) if limits else None  # None: only causal samplers, no limit
    length = length or longest or pre.config.sample.length
    length = min(length, longest) if longest else length
    grid = steps_grid(length, steps)
    jobs = []
    for spec in policies:
        sampler = pick_sampler(spec.name, pre)
        budgets = [length] if sampler.max_length(block, 0) is None else grid
        jobs += [(spec, sampler, s) for s in budgets]
    reference = None
    if dataset is not None:
        reference = quality(reference_texts(dataset, quality_batch, length), judge)
    rows = []
    bar = tqdm(jobs, desc="bench-sample", unit="run", file=sys.stderr, disable=not progress)
    warm = set()
    for spec, sampler, budget in bar:
        bar.set_postfix_str(f"{spec.label} steps={budget}")
        prompt = sampler.default_prompt
        prompt_ids = pre.tokenizer.encode(prompt) if prompt else []
        row = {"policy": spec.label, "sampler": spec.name, "steps": budget, "length": length,
               "options": {**(common or {}), **spec.options}}
        for b in batch_sizes:
            request = checkpoint_request(pre, sampler, prompt_ids, length=length, steps=budget,
                                         num_samples=b, **row["options"])
            if (spec.name, b) not in warm:  # first call of a shape: allocator, kernels
                _timed(pre, sampler, dataclasses.replace(request, steps=2), seed)
                warm.add((spec.name, b))
            texts, calls, seconds, taken, budget = _timed(pre, sampler, request, seed)
            chars = sum(len(t) for t in texts)
            row[f"batch_{b}"] = {"seconds": seconds, "chars_per_second": chars / seconds,
                                 "network_calls": calls, "steps_taken": taken,
                                 "step_budget": budget,  # blocks: at least one step each
                                 "calls_per_char": calls / max(1, chars / b)}
            if b == quality_batch:
                row["quality"] = quality(texts, judge)
                row["example"] = texts[0]
        rows.append(row)
    device = next(pre.model.parameters()).device
    return {"checkpoint": pre.path, "judge": judge.path if judge is not None else None,
            "length": length, "batch_sizes": batch_sizes, "quality_batch": quality_batch,
            "steps": grid, "device": str(device), "torch_threads": torch.get_num_threads(),
            "reference": reference, "rows": rows}


def _f(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    """The results as one Markdown table (the reference text's quality on the first line)."""
    sizes = result["batch_sizes"]
    head = (["policy", "steps", "judge NLL", "char entropy", "distinct-2", "self-BLEU"]
            + [f"chars/s (batch {b})" for b in sizes] + ["calls/char"])
    lines = [f"Samples of {result['length']} positions (tokens: characters for a character "
             f"model); quality over "
             f"{result['quality_batch']} samples; judge: {result['judge'] or 'none'}; "
             f"device: {result['device']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def quality_cells(q: dict | None) -> list[str]:
        q = q or {}
        return [_f(q.get("judge_nll_nats_per_char")), _f(q.get("char_entropy")),
                _f(q.get("distinct_2")), _f(q.get("self_bleu"))]

    if result.get("reference"):
        lines.append("| real text | - | " + " | ".join(quality_cells(result["reference"]))
                     + " |" + " - |" * (len(sizes) + 1))
    for row in result["rows"]:
        speed = [_f(row[f"batch_{b}"]["chars_per_second"], 1) for b in sizes]
        calls = _f(row[f"batch_{sizes[-1]}"]["calls_per_char"])
        lines.append("| " + " | ".join([row["policy"], str(row["steps"]),
                                        *quality_cells(row.get("quality")), *speed, calls])
                     + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str | Path) -> None:
    """Quality (judge NLL or entropy) and speed against steps, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes, ref = result["batch_sizes"], result.get("reference") or {}
    judged = result["judge"] is not None
    panels = [("judge_nll_nats_per_char" if judged else "distinct_2",
               "judge NLL (nats/char)" if judged else "distinct-2"),
              ("char_entropy", "char entropy (nats)")]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    by_policy: dict[str, list[dict]] = {}
    for row in result["rows"]:
        by_policy.setdefault(row["policy"], []).append(row)
    colors = {policy: f"C{i % 10}" for i, policy in enumerate(by_policy)}
    markers = {policy: "os^vD"[i // 10 % 5] for i, policy in enumerate(by_policy)}
    for ax, (key, title) in zip(axes[0], panels):
        for policy, rows in by_policy.items():
            ax.plot([r["steps"] for r in rows], [r["quality"].get(key) for r in rows],
                    marker=markers[policy], color=colors[policy], label=policy)
        if ref.get(key) is not None:
            ax.axhline(ref[key], color="black", linestyle="--", label="real text")
        ax.set_title(title)
    for policy, rows in by_policy.items():
        for b, style in zip(sizes, ("-", "--", ":", "-.")):
            axes[1, 0].plot([r["steps"] for r in rows],
                            [r[f"batch_{b}"]["chars_per_second"] for r in rows],
                            linestyle=style, marker=markers[policy], color=colors[policy])
        axes[1, 1].plot([r["steps"] for r in rows],
                        [r[f"batch_{sizes[-1]}"]["calls_per_char"] for r in rows],
                        marker=markers[policy], color=colors[policy], label=policy)
    for b, style in zip(sizes, ("-", "--", ":", "-.")):
        axes[1, 0].plot([], [], linestyle=style, color="gray", label=f"batch {b}")
    axes[1, 0].set_title("characters per second")
    axes[1, 0].set_yscale("log")
    axes[1, 1].set_title("network calls per character")
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("steps")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    run = Path(result["checkpoint"])
    name = run.parent.name if run.name in ("best", "latest") else run.name
    fig.suptitle(f"{name}: {result['length']} characters per sample, device "
                 f"{result['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict, out: str | Path) -> dict[str, str]:
    """bench.json, bench.md and bench.png under `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "plot": out / "bench.png"}
    paths["json"].write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    paths["markdown"].write_text(markdown(result), encoding="utf-8")
    try:
        plot(result, paths["plot"])
    except ImportError:
        print("bench-sample: no plot (matplotlib missing: pip install 'unmask[eval]')",
              file=sys.stderr)
        del paths["plot"]
    return {k: str(v) for k, v in paths.items()}
