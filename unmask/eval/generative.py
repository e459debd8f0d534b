"""Generative quality of samples, read against the real text's own figures.

`quality(texts)` gathers what a reader needs to judge samples: the judge NLL (eval/judge.py,
when a judge is given), the diversity figures (eval/diversity.py: character entropy,
distinct-n, self-BLEU) and word validity (eval/words.py). `reference_texts` draws real
validation passages of the samples' length, the yardstick: samples that beat the real text
on judge NLL while falling short on entropy or distinct-2 are repeating themselves.
"""

from __future__ import annotations

import torch

from unmask.eval.diversity import diversity
from unmask.eval.judge import JUDGE_COMMAND, judge_nll
from unmask.eval.words import word_validity

REFERENCE_SEED = 0


def reference_texts(dataset, n: int, length: int, seed: int = REFERENCE_SEED) -> list[str]:
    """`n` validation passages of `length` tokens at seeded random offsets."""
    val = dataset.val
    length = min(length, len(val) - 1)
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(val) - length, (n,), generator=generator).tolist()
    return [dataset.tokenizer.decode(val[s:s + length].tolist()) for s in starts]


def quality(texts: list[str], judge=None, known_words: set[str] | None = None) -> dict:
    """Judge NLL (with a judge), diversity and word validity of one set of texts."""
    result = {}
    if judge is not None:
        result.update(judge_nll(judge, texts))
    result.update(diversity(texts))
    if known_words is not None:
        result["word_validity"], result["words_scored"] = word_validity(texts, known_words)
    return result


def generative_report(samples: list[str], reference: list[str], judge=None,
                      known_words: set[str] | None = None) -> dict:
    """Samples' and reference's quality side by side."""
    report = {"judge": judge.path if judge is not None else None,
              "samples": quality(samples, judge, known_words),
              "reference": quality(reference, judge, known_words)}
    if judge is None:
        report["judge_hint"] = f"no judge: train one with `{JUDGE_COMMAND}` or pass --judge"
    return report


def per_text_metrics(texts: list[str], judge=None) -> list[dict]:
    """Each text's own figures, for per-sample metadata (`unmask sample --output`)."""
    from unmask.eval.diversity import char_entropy, distinct_n
    from unmask.eval.judge import judge_text_nlls

    nlls = judge_text_nlls(judge, texts) if judge is not None else [None] * len(texts)
    return [{"char_entropy": char_entropy([t]), "distinct_2": distinct_n([t], 2),
             **({"judge_nll_nats_per_char": n / len(t)} if n is not None and t else {})}
            for t, n in zip(texts, nlls)]


def compare_with_reference(texts: list[str], dataset, judge=None) -> str:
    """A few lines: the texts' entropy and distinct-2 (and judge NLL) beside real validation
    passages of the same number and length (what `make demo` prints after its samples)."""
    lengths = [len(dataset.tokenizer.encode(t)) for t in texts] if texts else [0]
    reference = reference_texts(dataset, len(texts), max(lengths))
    rows = [("samples", quality(texts, judge)), ("real text", quality(reference, judge))]
    keys = [("char entropy", "char_entropy"), ("distinct-2", "distinct_2")]
    if judge is not None:
        keys.insert(0, ("judge NLL", "judge_nll_nats_per_char"))
    lines = [f"{'':12}" + "".join(f"{label:>14}" for label, _ in keys)]
    for name, q in rows:
        cells = ("-" if q.get(k) is None else f"{q[k]:.3f}" for _, k in keys)
        lines.append(f"{name:12}" + "".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def batch_results(pre, records, judge=None, dataset=None) -> dict:
    """`unmask sample --prompts FILE --output FILE`'s JSON: every sample with what made it
    (sampling/batch.py `Generated`) and its own metrics (character entropy, distinct-2, word
    validity with the dataset, judge NLL with a judge), all over the text the sampler wrote."""
    from unmask.eval.words import vocabulary_of

    written = [r.generated for r in records]
    metrics = per_text_metrics(written, judge)
    if dataset is not None:
        known = vocabulary_of(dataset.tokenizer.decode(dataset.train.tolist()))
        for m, text in zip(metrics, written):
            m["word_validity"], m["words_scored"] = word_validity([text], known)
    return {"checkpoint": pre.path, "judge": judge.path if judge is not None else None,
            "samples": [{**r.to_json(), "metrics": m} for r, m in zip(records, metrics)]}
