"""`unmask proofread`: windows over a long text, each position edited once with context on both
sides; a sure oracle repairs every swap through them; the CLI's text, file and JSON paths,
characters the tokenizer lacks, and its one-line errors."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.cli.main import main
from unmask.cli.proofread import proofread_text
from unmask.errors import UserError
from unmask.sampling.channel import channel_repair
from unmask.sampling.proofread import PROOFREADERS, proofread_ids, window_plan
from tests.test_channel_repair import SureOracle
from tests.test_repair_eval import MASK, V, WRONG

SAMPLER = dict(vocab_size=V, mask_id=MASK, wrong_id=WRONG, remask_target="wrong",
               mask_logit_bias=0.0, flag_bias=0.0, max_steps=16, change_margin=1.0)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 700), length=st.integers(2, 160))
def test_windows_edit_each_position_once_with_context_around_it(n, length):
    positions, owned = window_plan(n, length)
    width = min(n, length)
    assert positions.shape == owned.shape and positions.size(1) == width
    assert positions.min() == 0 and positions.max() == n - 1
    assert (positions.diff(dim=1) == 1).all()  # each window is a contiguous stretch
    counts = torch.zeros(n, dtype=torch.long).index_add_(
        0, positions[owned], torch.ones(int(owned.sum()), dtype=torch.long))
    assert (counts == 1).all()  # every position is edited by exactly one window
    # ... in which it has a quarter of a context on each side, unless the text ends first
    margin = width // 4 - 1
    left = torch.arange(width).expand_as(positions)[owned]
    where = positions[owned]
    assert (left >= torch.clamp(where, max=margin)).all()
    assert (width - 1 - left >= torch.clamp(n - 1 - where, max=margin)).all()


def test_window_plan_rejects_nothing_to_read():
    with pytest.raises(UserError, match="nothing to proofread"):
        window_plan(0, 32)


def _swapped(clean: torch.Tensor, every: int) -> torch.Tensor:
    corrupted = clean.clone()
    corrupted[::every] = (clean[::every] + 1) % V
    return corrupted


@pytest.mark.parametrize("proofreader", sorted(PROOFREADERS))
def test_a_sure_oracle_repairs_every_swap_of_a_long_text(proofreader):
    clean = torch.randint(0, V, (300,), generator=torch.Generator().manual_seed(0))
    positions, _ = window_plan(300, 32)
    model = SureOracle(clean[positions])  # row i of a batch is window i: one batch holds all
    out = proofread_ids(model, _swapped(clean, 7), context=32, proofreader=proofreader,
                        sampler=SAMPLER, prior=0.1, batch_size=len(positions))
    assert torch.equal(out, clean)


def test_a_short_text_is_one_window_read_as_channel_repair_reads_it():
    clean = torch.randint(0, V, (20,), generator=torch.Generator().manual_seed(1))
    corrupted = _swapped(clean, 5)
    model = SureOracle(clean[None])
    out = proofread_ids(model, corrupted, context=32, proofreader="channel",
                        sampler=SAMPLER, prior=0.1)
    direct = channel_repair(model, corrupted[None], vocab_size=V, mask_id=MASK,
                            error_rate=0.1)[0]
    assert torch.equal(out, direct) and torch.equal(out, clean)


def test_proofread_ids_names_an_unknown_proofreader():
    with pytest.raises(UserError, match="unknown proofreader 'x'"):
        proofread_ids(SureOracle(torch.zeros(1, 4, dtype=torch.long)), torch.zeros(4).long(),
                      context=4, proofreader="x", sampler=SAMPLER, prior=0.1)


# ----------------------------------------------------------------------------- the command

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak."
        "\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n") * 2
UNKNOWN = 'He said "yes" (twice) in 1592, café.\n'  # '"', '(', ')', digits but 3, 'é'


@pytest.mark.parametrize("proofreader", sorted(PROOFREADERS))
def test_the_command_keeps_length_and_unknown_characters(sc_run, proofreader):
    text = TEXT + UNKNOWN + TEXT  # several windows of the debug model's 32-character context
    result = proofread_text(str(sc_run), text, proofreader=proofreader, device="cpu")
    out = result["text"]
    assert len(out) == len(text) and result["tokens"] == len(text)
    assert result["unit"] == "character"
    unknown = [i for i, ch in enumerate(text) if ch in '"()1592é']
    assert unknown and all(out[i] == text[i] for i in unknown)
    # the changes are exactly where the two texts differ
    assert [c["position"] for c in result["changes"]] == [
        i for i, (a, b) in enumerate(zip(text, out)) if a != b]
    assert all(text[c["position"]] == c["from"] and out[c["position"]] == c["to"]
               for c in result["changes"])


@pytest.mark.parametrize("proofreader", sorted(PROOFREADERS))
def test_dtype_auto_takes_the_precision_training_would(sc_run, bf16_probe, proofreader):
    from unmask.model.pretrained import load_pretrained
    from unmask.sampling.proofread import proofread_pretrained

    probed = bf16_probe
    pre = load_pretrained(str(sc_run), "cpu")
    seen = []
    pre.model.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    auto = proofread_pretrained(pre, TEXT, proofreader=proofreader, prior_rate=0.3,
                                dtype="auto")
    assert auto["precision"] == "bfloat16" and set(seen) == {torch.bfloat16}
    assert len(auto["text"]) == len(TEXT)
    # the probe timed the model's block with the kernel it runs with (a loaded model: SDPA)
    assert [(s.width, s.context, s.attention) for s in probed] == [(32, 32, ("sdpa",))]
    seen.clear()
    exact = proofread_pretrained(pre, TEXT, proofreader=proofreader, prior_rate=0.3)
    assert exact["precision"] == "float32" and set(seen) == {torch.float32}


def test_cli_stdin_file_output_and_json(sc_run, tmp_path, capsys, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text(TEXT, encoding="utf-8")
    capsys.readouterr()
    # float32: the same text every time (auto could probe the CPU anew and pick bf16)
    fp32 = ["--dtype", "float32"]
    assert main(["proofread", str(sc_run), str(source), "--json", "--prior-rate", "0.3",
                 *fp32]) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out)
    assert r["prior_rate"] == 0.3 and r["proofreader"] == "channel"
    assert r["precision"] == "float32"
    assert f"changed {len(r['changes'])} of {len(TEXT)} characters" in captured.err
    # the same text from stdin, to stdout; then to a file
    monkeypatch.setattr("sys.stdin", open(source, encoding="utf-8"))
    assert main(["proofread", str(sc_run), "--prior-rate", "0.3", *fp32]) == 0
    assert capsys.readouterr().out == r["text"]
    target = tmp_path / "out.txt"
    assert main(["proofread", str(sc_run), str(source), "--prior-rate", "0.3",
                 "--output", str(target), *fp32]) == 0
    assert target.read_text(encoding="utf-8") == r["text"] and capsys.readouterr().out == ""
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_choices_are_the_registry(sc_run, capsys):
    with pytest.raises(SystemExit):
        main(["proofread", str(sc_run), "--proofreader", "nonsense"])
    assert f"choose from {', '.join(map(repr, sorted(PROOFREADERS)))}" in \
        capsys.readouterr().err


@pytest.fixture(scope="module")
def lm_run(shakespeare, tmp_path_factory):
    run = tmp_path_factory.mktemp("lm") / "run"
    assert main(["train", "debug", "--data", str(shakespeare.path), "--out", str(run),
                 "--model.mode=language_model", "--train.max_iters=2",
                 "--train.progress=false"]) == 0
    return run


def test_cli_one_line_errors(sc_run, lm_run, tmp_path, capsys):
    ok, empty, latin1 = tmp_path / "ok.txt", tmp_path / "empty.txt", tmp_path / "latin1.txt"
    ok.write_text("speak", encoding="utf-8")
    empty.write_text("", encoding="utf-8")
    latin1.write_bytes("café".encode("latin-1"))
    cases = [
        ([sc_run, empty], "nothing to proofread: the input is empty"),
        ([sc_run, tmp_path / "missing.txt"], "no such file"),
        ([sc_run, latin1], "is not UTF-8 text"),
        ([sc_run, ok, "--prior-rate", "0"], "--prior-rate must be in (0, 1)"),
        ([sc_run, ok, "--change-margin", "0.5"], "--change-margin must be >= 1"),
        ([lm_run, ok], "does not fill masked text"),
        ([lm_run, ok, "--proofreader", "remask"], "train.objective=self_correction"),
        ([sc_run, ok, "--output", tmp_path / "no" / "out.txt"], "no folder"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["proofread", *map(str, args)]) == 2, message
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
