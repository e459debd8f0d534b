"""Conditioning anywhere: the infill syntax, fixed tokens kept by every sampler, batch prompts."""

import pytest
import torch

from unmask.config.schema import ModelConfig, RunConfig
from unmask.errors import UserError
from unmask.model.pretrained import Pretrained
from unmask.model.transformer import Transformer
from unmask.sampling.base import SampleRequest, final_state
from unmask.sampling.batch import generate_batch, generate_one, read_prompts
from unmask.sampling.infill import has_holes, infill_request, parse_infill
from unmask.sampling.registry import SAMPLERS, checkpoint_request, pick_sampler
from unmask.text.tokenizers.char import CharTokenizer

TEXT = "\n !',-.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz[]\\0123456789"
TOK = CharTokenizer.from_text(TEXT)
V, MASK = TOK.vocab_size, TOK.mask_id
KINDS = {"mdlm": ("token_classifier", "mdlm"), "lm": ("language_model", "causal_lm"),
         "self_correction": ("token_classifier", "self_correction")}


def _pre(kind: str) -> Pretrained:
    mode, objective = KINDS[kind]
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=64,
                                    vocab_size=TOK.extended_vocab_size, mode=mode)).eval()
    config = RunConfig.from_dict({"model": {"mode": mode, "block_size": 64},
                                  "train": {"objective": objective},
                                  "sample": {"steps": 6, "length": 20, "num_samples": 2}})
    return Pretrained(model, TOK, config, {}, "ckpt")


def test_the_documented_example():
    ids, fixed = parse_infill("To be, or [MASK:40] the question", TOK)
    head, tail = "To be, or ", " the question"
    assert len(ids) == len(head) + 40 + len(tail)
    assert ids[:len(head)] == TOK.encode(head) and ids[-len(tail):] == TOK.encode(tail)
    assert ids[len(head):len(head) + 40] == [MASK] * 40
    assert fixed == [True] * len(head) + [False] * 40 + [True] * len(tail)


@pytest.mark.parametrize("text, pattern", [
    ("ROMEO:[MASK:5]", "FFFFFF" + "....."),  # prefix
    ("[MASK:3]end.", "..." + "FFFF"),  # suffix
    ("[MASK]a[MASK:2]b[MASK]", ".F..F."),  # several holes, [MASK] is one token
    ("x\\[MASK:2]y[MASK]", "F" * 10 + "."),  # an escaped hole is text
    ("a\\\\[MASK]", "FF."),  # \\ is a backslash, then a real hole
])
def test_prefix_suffix_middle_and_escapes(text, pattern):
    ids, fixed = parse_infill(text, TOK)
    assert "".join("F" if f else "." for f in fixed) == pattern
    assert all((i == MASK) != f for i, f in zip(ids, fixed))
    if text.startswith("x"):
        assert TOK.decode([i for i in ids if i != MASK]) == "x[MASK:2]y"
    if text.startswith("a"):
        assert TOK.decode(ids[:2]) == "a\\"


@pytest.mark.parametrize("text, message", [
    ("no holes here", "nothing to fill"),
    ("bad [MASK:x] hole", "malformed"),
    ("bad [MASK:0] hole", "at least one"),
    ("[MASK:3", "malformed"),
])
def test_bad_infill_texts_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_infill(text, TOK)


def test_has_holes():
    assert has_holes("a [MASK:3] b") and has_holes("[MASK]")
    assert not has_holes("a \\[MASK:3] b") and not has_holes("plain")


TEMPLATES = ["ROMEO:[MASK:12]", "[MASK:12]the end.", "To be, or [MASK:10] the question",
             "[MASK:4]mid[MASK:6]dle[MASK:3]"]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("name", [n for n in SAMPLERS if n != "causal"])
@pytest.mark.parametrize("block_length", [0, 4])
def test_no_sampler_changes_a_fixed_token(template, name, block_length):
    pre = _pre("self_correction" if name == "remask" else "mdlm")
    sampler = pick_sampler(name, pre)
    ids, fixed = parse_infill(template, TOK)
    request = checkpoint_request(pre, sampler, [], template_ids=tuple(ids),
                                 block_length=block_length, eta=0.3)
    fixed_t = torch.tensor(fixed)
    start = torch.tensor(ids)
    events = list(sampler.generate(pre.model, request, torch.Generator().manual_seed(1)))
    for e in events:
        assert (e.tokens[:, fixed_t] == start[fixed_t]).all()
        assert not (e.revealed | e.remasked)[:, fixed_t].any()
    final = events[-1].tokens
    assert final.shape == (2, len(ids)) and (final < V).all()


def test_causal_continues_a_prefix_template_and_refuses_a_middle():
    pre = _pre("lm")
    sampler = pick_sampler("causal", pre)
    ids, _ = parse_infill("ROMEO:[MASK:12]", TOK)
    request = checkpoint_request(pre, sampler, [], template_ids=tuple(ids))
    via_template = final_state(sampler.generate(pre.model, request,
                                                torch.Generator().manual_seed(2))).tokens
    plain = checkpoint_request(pre, sampler, TOK.encode("ROMEO:"), length=12)
    via_prompt = final_state(sampler.generate(pre.model, plain,
                                              torch.Generator().manual_seed(2))).tokens
    assert torch.equal(via_template, via_prompt)
    ids, _ = parse_infill("To be[MASK:5] the question", TOK)
    middle = checkpoint_request(pre, sampler, [], template_ids=tuple(ids))
    with pytest.raises(UserError, match="only continues a prefix"):
        sampler.generate(pre.model, middle, torch.Generator())


def test_requests_from_a_template():
    pre = _pre("mdlm")
    sampler = pick_sampler("confidence", pre)
    ids, _ = parse_infill("ab[MASK:7]cd", TOK)
    request = checkpoint_request(pre, sampler, [], template_ids=tuple(ids))
    assert (request.length, request.total, request.n_fixed) == (7, 11, 4)
    with pytest.raises(UserError, match="--length does not apply"):
        checkpoint_request(pre, sampler, [], template_ids=tuple(ids), length=9)
    assert infill_request("ab[MASK:7]cd", TOK, steps=3).template_ids == request.template_ids
    with pytest.raises(UserError, match="exceeds the model's context"):
        long_ids, _ = parse_infill("ab[MASK:70]", TOK)
        sampler.generate(pre.model, checkpoint_request(pre, sampler, [],
                                                       template_ids=tuple(long_ids)), None)
    with pytest.raises(UserError, match="either a prompt or an infill"):
        SampleRequest(length=7, mask_id=MASK, vocab_size=V, prompt_ids=(1,),
                      template_ids=tuple(ids))


def test_batch_generation_keeps_seeds_and_metadata():
    pre = _pre("mdlm")
    prompts = ["", "ROMEO:", "To be[MASK:6] the question"]
    records = generate_batch(pre, prompts, policy="threshold", seed=10, num_samples=2,
                             length=None, progress=False)
    assert [r.seed for r in records] == [10, 10, 11, 11, 12, 12]
    assert [r.row for r in records] == [0, 1] * 3
    for r in records:
        assert r.policy == "threshold" and 0 < r.network_calls <= r.steps_taken <= r.steps
        assert r.seconds > 0 and r.settings["threshold"] == 0.9
        assert set(r.to_json()) >= {"seed", "steps", "policy", "seconds", "network_calls"}
    assert records[2].text.startswith("ROMEO:") and len(records[2].generated) == 20
    infill = records[4]
    assert infill.text.startswith("To be") and infill.text.endswith(" the question")
    assert len(infill.generated) == 6 and "[" not in infill.text
    again = generate_one(pre, prompts[2], policy="threshold", seed=12, num_samples=2)
    assert [g.text for g in again] == [r.text for r in records[4:]]


def test_read_prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("ROMEO:\nKING\\nHENRY:\n[MASK:3]end\n", encoding="utf-8")
    assert read_prompts(str(path)) == ["ROMEO:", "KING\nHENRY:", "[MASK:3]end"]
