"""unmask from Python: a trained run, ready to generate, fill in and proofread with -- what
`unmask sample` and `unmask proofread` do, without the command line.

    import unmask

    model = unmask.load("out/demo")                            # a run or checkpoint dir
    model.generate("ROMEO:", length=120, steps=64, seed=1)     # ['ROMEO:\\n...']
    model.generate("To be, or [MASK:40] the question")         # the 40-character hole filled
    model.proofread("Befere we proceed any further", prior_rate=0.3)["text"]

The same seed and settings give the texts the command line prints: `generate(P, seed=S,
num_samples=N, ...)` is `unmask sample RUN --prompt P --seed S --num-samples N ... --json`'s
"samples" (a prompt with [MASK] / [MASK:n] holes is `--infill`'s). Settings left None are the
checkpoint's own (its `sample` config). Bad settings raise `unmask.errors.UserError` (a
ValueError) naming the problem. `model.pretrained` is the loaded run (model.pretrained.
Pretrained: the torch module, tokenizer, config, meta) for everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from unmask.errors import UserError
from unmask.model.pretrained import (
    INFERENCE_PRECISIONS,
    Pretrained,
    load_pretrained,
    running_precision,
)
from unmask.sampling.batch import generate_one
from unmask.sampling.proofread import DEFAULT_PRIOR_RATE, proofread_pretrained


def load(path: str, *, device: str = "auto", dtype: str = "float32") -> Model:
    """The run or checkpoint at `path` (a run dir reads `best`, else `latest`), on `device`
    (auto | cpu | cuda | mps ...), generating in `dtype`: float32 (the command line's default:
    the same texts on every machine), auto (bf16 autocast where training would use it:
    quicker, other texts) or bfloat16."""
    if dtype not in INFERENCE_PRECISIONS:
        raise UserError(f"dtype must be one of {', '.join(INFERENCE_PRECISIONS)}, got '{dtype}'")
    return Model(load_pretrained(path, device), dtype)


@dataclass
class Model:
    """A loaded run (`pretrained`) and the precision it runs in (`dtype`, as `load` takes)."""

    pretrained: Pretrained
    dtype: str = "float32"

    def generate(self, prompt: str = "", *, num_samples: int = 1, seed: int = 0,
                 policy: str | None = None, steps: int | None = None,
                 length: int | None = None, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None,
                 block_length: int | None = None, threshold: float | None = None,
                 eta: float | None = None, position_decay: float | None = None,
                 gumbel64: bool = False) -> list[str]:
        """`num_samples` texts, each the prompt and what follows it (or the infill text with
        its holes filled). `policy`: a sampler that fits the checkpoint (`unmask sample
        --help` lists them; None: the checkpoint's own)."""
        with running_precision(self.pretrained, self.dtype, num_samples):
            rows = generate_one(self.pretrained, prompt, policy=policy, seed=seed,
                                num_samples=num_samples, steps=steps, length=length,
                                temperature=temperature, top_k=top_k, top_p=top_p,
                                block_length=block_length, threshold=threshold, eta=eta,
                                position_decay=position_decay, gumbel64=gumbel64)
        return [row.text for row in rows]

    def proofread(self, text: str, *, proofreader: str = "channel",
                  prior_rate: float = DEFAULT_PRIOR_RATE, change_margin: float | None = None,
                  flag_bias: float = 0.0) -> dict:
        """`text` with its wrong characters replaced, as `unmask proofread --json` reports it:
        {"text": corrected, "changes": [{"position", "from", "to"}], ...}. The proofreaders
        and knobs are the command's (README, "Proofread your own text")."""
        return proofread_pretrained(self.pretrained, text, proofreader=proofreader,
                                    prior_rate=prior_rate, change_margin=change_margin,
                                    flag_bias=flag_bias, dtype=self.dtype)
