"""One sampler interface: every registered sampler streams StepEvents that tell the whole story."""

import json

import pytest
import torch
import torch.nn as nn

from unmask.config.schema import ModelConfig, RunConfig
from unmask.errors import UserError
from unmask.model.pretrained import Pretrained
from unmask.model.transformer import Transformer
from unmask.sampling.base import SampleRequest, final_state
from unmask.sampling.causal import generate_causal
from unmask.sampling.draw import device_generator, sample_tokens
from unmask.sampling.registry import SAMPLERS, default_sampler, pick_sampler
from unmask.sampling.remask import RemaskSampler, remask_sample
from unmask.sampling.unmasking import sample
from unmask.text.tokenizers.char import CharTokenizer

V, MASK, WRONG, VEXT = 65, 65, 66, 72
TOKENIZER = CharTokenizer(tuple(chr(32 + i) for i in range(V)))
PROMPT = (5, 9)
CHECKPOINTS = {  # (model.mode, train.objective): one of each kind the samplers may fit
    "mdlm": ("token_classifier", "mdlm"),
    "causal_lm": ("language_model", "causal_lm"),
    "self_correction": ("token_classifier", "self_correction"),
}


class Counting(nn.Module):
    """Counts forward passes and records the wrapped model's training flag at each."""

    def __init__(self, inner: Transformer):
        super().__init__()
        self.inner, self.cfg = inner, inner.cfg
        self.calls, self.training_at_call = 0, []

    def forward(self, *args):
        self.calls += 1
        self.training_at_call.append(self.inner.training)
        return self.inner(*args)


def _config(kind: str) -> RunConfig:
    mode, objective = CHECKPOINTS[kind]
    return RunConfig.from_dict({"model": {"mode": mode}, "train": {"objective": objective}})


def _kind_for(name: str) -> str:
    kinds = [k for k in CHECKPOINTS if SAMPLERS[name].fits(_config(k))]
    assert kinds, f"no test checkpoint fits sampler {name}: add one to CHECKPOINTS"
    return kinds[0]


def _model(mode: str) -> Counting:
    torch.manual_seed(0)
    return Counting(Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=32,
                                            vocab_size=VEXT, mode=mode)).eval())


def _build(name: str, tmp_path) -> tuple:
    """(sampler, model) as the CLI would build them for a checkpoint the sampler fits."""
    config = _config(_kind_for(name))
    model = _model(config.model.mode)
    pre = Pretrained(model, TOKENIZER, config, {}, str(tmp_path))
    return pick_sampler(name, pre), model


def _request(**kw) -> SampleRequest:
    return SampleRequest(**{"length": 12, "mask_id": MASK, "vocab_size": V,
                            "prompt_ids": PROMPT, "num_samples": 3, "steps": 5} | kw)


def _check_stream(events, request, model):
    """The invariants every stream keeps, checked against the previous state each time."""
    P, B, L = len(request.prompt_ids), request.num_samples, request.total
    tokens = torch.full((B, L), MASK)
    tokens[:, :P] = torch.tensor(request.prompt_ids)
    masked = tokens == MASK
    net = torch.zeros(B, dtype=torch.long)
    calls, moved = 0, True
    assert events, "a stream yields at least one event"
    for i, e in enumerate(events, start=1):
        # one forward pass per step, except after a step that changed nothing (MDLM's cache)
        assert e.step == i <= e.steps
        assert e.network_calls == calls + 1 or (not moved and e.network_calls == calls)
        calls = e.network_calls
        assert torch.equal(e.masked, e.tokens == MASK)
        assert not (e.revealed & ~masked).any()  # revealed: hidden before ...
        assert not (e.revealed & e.masked).any()  # ... and not after
        assert not (e.remasked & masked).any() and not (e.remasked & ~e.masked).any()
        changed = e.revealed | e.remasked
        assert torch.equal(e.tokens[~changed], tokens[~changed])  # nothing else moves
        assert torch.equal(e.tokens[:, :P], tokens[:, :P])  # the prompt never does
        assert ((e.confidence > 0) & (e.confidence <= 1) | ~e.revealed).all()
        assert (e.confidence[~e.revealed] == 0).all()
        assert not (e.done & e.masked.any(-1)).any()  # a done row has no mask left
        net += e.revealed.sum(-1) - e.remasked.sum(-1)
        moved = not torch.equal(e.tokens, tokens)
        tokens, masked = e.tokens, e.masked
    assert (net == request.length).all()  # every generated position revealed once, net
    assert events[-1].done.all() and not events[-1].masked.any()
    assert (events[-1].tokens < V).all()  # no special token anywhere
    assert model.calls == events[-1].network_calls


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_every_sampler_streams_consistent_events(name, temperature, tmp_path):
    sampler, model = _build(name, tmp_path)
    request = _request(temperature=temperature, top_k=20)
    events = list(sampler.generate(model, request, torch.Generator().manual_seed(1)))
    _check_stream(events, request, model)


def test_remask_events_account_for_every_remask(tmp_path):
    """A flag bias that flags every visible token it may: the invariants hold with re-masks."""
    model = _model("token_classifier")
    request = _request(steps=8)
    events = list(RemaskSampler(WRONG, flag_bias=100.0, max_remasks=2).generate(
        model, request, torch.Generator().manual_seed(2)))
    _check_stream(events, request, model)
    remasks = sum(e.remasked.long() for e in events)
    assert (remasks[:, len(PROMPT):] > 0).any() and (remasks[:, :len(PROMPT)] == 0).all()
    assert remasks.max() == 2  # the cap


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_same_seed_same_text(name, tmp_path):
    sampler, model = _build(name, tmp_path)
    request = _request(top_p=0.95)

    def run(seed):
        return final_state(sampler.generate(model, request,
                                            torch.Generator().manual_seed(seed))).tokens

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("stop_after", [None, 1])
def test_training_flags_restored(name, stop_after, tmp_path):
    sampler, model = _build(name, tmp_path)
    model.train()
    model.inner.blocks[0].eval()  # a mixed state must come back exactly, not all-train
    before = [m.training for m in model.modules()]
    for i, _ in enumerate(sampler.generate(model, _request(), torch.Generator()), start=1):
        assert [m.training for m in model.modules()] == before  # between steps too
        if i == stop_after:
            break  # the consumer stops early: the generator is closed, still restored
    assert [m.training for m in model.modules()] == before
    assert model.training_at_call and not any(model.training_at_call)  # eval inside


# The samplers that keep a keyword-argument shortcut (the older function-style API).
SHORTCUTS = ("confidence", "random", "causal", "remask", "margin", "entropy", "threshold")


@pytest.mark.parametrize("name", SHORTCUTS)
def test_keyword_shortcuts_return_the_streams_last_tokens(name, tmp_path):
    sampler, model = _build(name, tmp_path)
    request = _request(top_k=10)
    last = final_state(sampler.generate(model, request, torch.Generator().manual_seed(3)))
    kw = dict(vocab_size=V, mask_id=MASK, length=12, prompt_ids=list(PROMPT), num_samples=3,
              top_k=10, generator=torch.Generator().manual_seed(3))
    shortcuts = {
        "confidence": lambda: sample(model, steps=5, policy="confidence", **kw),
        "random": lambda: sample(model, steps=5, policy="random", **kw),
        "causal": lambda: final_state(generate_causal(model, **kw)).tokens,
        "remask": lambda: remask_sample(model, wrong_id=WRONG, steps=5, **kw),
        "margin": lambda: sample(model, steps=5, policy="margin", **kw),
        "entropy": lambda: sample(model, steps=5, policy="entropy", **kw),
        "threshold": lambda: sample(model, steps=5, policy="threshold", **kw),
    }
    assert set(shortcuts) == set(SHORTCUTS) <= set(SAMPLERS)
    assert torch.equal(shortcuts[name](), last.tokens)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_runs_the_one_prompt_length_check(name, tmp_path):
    sampler, model = _build(name, tmp_path)
    longest = sampler.max_length(32, len(PROMPT))
    if longest is None:  # a sliding window: longer than the context is fine
        events = list(sampler.generate(model, _request(length=40), torch.Generator()))
        assert events[-1].tokens.shape == (3, 42)
    else:
        assert longest == 30
        with pytest.raises(UserError, match="exceeds the model's context 32"):
            sampler.generate(model, _request(length=31), torch.Generator())  # eagerly
    with pytest.raises(UserError, match="--length must be positive"):
        _request(length=0)


def test_causal_needs_a_prompt_and_defaults_to_a_newline(tmp_path):
    sampler, model = _build("causal", tmp_path)
    assert sampler.default_prompt == "\n"
    with pytest.raises(UserError, match="prompt of at least 1"):
        sampler.generate(model, _request(prompt_ids=()), torch.Generator())


def test_default_sampler_and_clear_errors(tmp_path):
    assert default_sampler(_config("causal_lm")) == "causal"
    assert default_sampler(_config("mdlm")) == "confidence"
    cfg = RunConfig.from_dict({"sample": {"policy": "random"}})
    assert default_sampler(cfg) == "random"
    pre = Pretrained(_model("token_classifier"), TOKENIZER, _config("mdlm"), {}, "ckpt")
    with pytest.raises(UserError, match="self_correction.*choose one of confidence, random"):
        pick_sampler("remask", pre)
    with pytest.raises(UserError, match="choose one of confidence, random, causal, remask"):
        pick_sampler("nope", pre)
    lm = Pretrained(_model("language_model"), TOKENIZER, _config("causal_lm"), {}, "lm")
    with pytest.raises(UserError, match="choose one of causal$"):
        pick_sampler("confidence", lm)
    classifier = RunConfig.from_dict({"model": {"mode": "sequence_classifier"}})
    with pytest.raises(UserError, match="it classifies"):
        default_sampler(classifier)


# ---------------------------------------------------------------- token draws


def _chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test of observed counts against expected probabilities (all > 0)."""
    n = counts.sum()
    chi2 = ((counts - n * probs) ** 2 / (n * probs)).sum()
    df = torch.tensor((len(probs) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(df, chi2 / 2))


@pytest.mark.parametrize("gumbel64", [True, False])
@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.7, 5)])
def test_draws_follow_the_softmax(gumbel64, temperature, top_k):
    """200k draws from a fixed 8-way distribution (smallest p 0.005, so >= 1000 expected per
    kept cell and the chi-square approximation holds). With a fixed seed the test is
    deterministic; p > 1e-4 rejects a correct sampler for 1 in 10^4 seeds only, while a
    biased one (float noise without log-log, a missing temperature, a leaked filtered token)
    lands at chi-square in the thousands, p ~ 0."""
    logits = torch.log(torch.tensor([0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.045, 0.005]))
    n = 200_000
    tokens, conf = sample_tokens(logits.expand(n, -1), temperature, top_k, 1.0,
                                 torch.Generator().manual_seed(11), gumbel64=gumbel64)
    probs = (logits.double() / temperature).softmax(-1)
    kept = torch.zeros(8, dtype=torch.bool)
    kept[torch.topk(logits, top_k or 8).indices] = True
    probs = torch.where(kept, probs, 0.0)
    probs /= probs.sum()
    counts = torch.bincount(tokens, minlength=8).double()
    assert (counts[~kept] == 0).all()  # top-k: a filtered token is never drawn
    assert _chi_square_p_value(counts[kept], probs[kept]) > 1e-4
    assert torch.allclose(conf.double(), probs[tokens], atol=1e-6)  # reported probability


def test_gumbel64_is_seeded_and_its_own_stream():
    logits = torch.randn(4, 10, V, generator=torch.Generator().manual_seed(0))

    def draw(seed, gumbel64):
        return sample_tokens(logits, 1.0, 0, 1.0, torch.Generator().manual_seed(seed),
                             gumbel64=gumbel64)[0]

    assert torch.equal(draw(1, True), draw(1, True))
    assert not torch.equal(draw(1, True), draw(2, True))
    assert not torch.equal(draw(1, True), draw(1, False))


def test_device_generator_keeps_the_callers_generator_on_its_device():
    g = torch.Generator().manual_seed(4)
    assert device_generator(g, "cpu") is g
    fresh = device_generator(None, torch.device("cpu"))
    assert torch.equal(torch.rand(3, generator=fresh),
                       torch.rand(3, generator=torch.Generator().manual_seed(0)))


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A plain MDLM and a causal LM run, two steps of a tiny model each."""
    from unmask.cli.main import main

    root = tmp_path_factory.mktemp("sampler_cli")
    assert main(["prepare", "tinyshakespeare", "--out", str(root / "ts")]) == 0
    tiny = ["--model.n_layer=1", "--model.n_head=2", "--model.n_embd=16",
            "--model.block_size=32", "--train.max_iters=2", "--train.eval_interval=2",
            "--train.eval_batches=1", "--train.batch_size=4", "--train.progress=false",
            "--train.compile=false", "--train.dtype=float32"]
    for name, extra in (("mdlm", []), ("lm", ["--model.mode=language_model"])):
        assert main(["train", "debug", "--data", str(root / "ts"), "--out", str(root / name),
                     *tiny, *extra]) == 0
    return root


def test_cli_remask_on_a_plain_mdlm_checkpoint_is_a_one_line_error(checkpoints, capsys):
    from unmask.cli.main import main

    capsys.readouterr()
    assert main(["sample", str(checkpoints / "mdlm"), "--policy", "remask"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "self_correction" in err and "choose one of confidence, random" in err


def test_cli_picks_the_causal_sampler_for_a_language_model(checkpoints, capsys):
    from unmask.cli.main import main

    capsys.readouterr()
    assert main(["sample", str(checkpoints / "lm"), "--policy", "confidence"]) == 2
    assert "choose one of causal" in capsys.readouterr().err
    args = ["sample", str(checkpoints / "lm"), "--json", "--length", "40", "--num-samples", "2",
            "--gumbel64", "--seed", "3"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert main([*args, "--policy", "causal"]) == 0
    assert json.loads(capsys.readouterr().out) == out  # causal is the default here
    assert all(s.startswith("\n") and len(s) == 41 and "[" not in s for s in out["samples"])


def test_cli_gumbel64_samples_text(checkpoints, capsys):
    from unmask.cli.main import main

    capsys.readouterr()
    assert main(["sample", str(checkpoints / "mdlm"), "--length", "20", "--num-samples", "2",
                 "--steps", "4", "--gumbel64", "--policy", "random"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample ") == 2 and "[MASK]" not in out
