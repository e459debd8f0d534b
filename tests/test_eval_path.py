"""One evaluation path: `unmask eval` reports what training validation reports, by model kind."""

import json
import math

import pytest
import torch

from unmask.cli.main import main
from unmask.data.dataset import Dataset
from unmask.data.windows import contiguous_windows
from unmask.model.pretrained import load_pretrained

TINY = ["--model.n_layer=1", "--model.n_head=2", "--model.n_embd=16", "--model.block_size=16",
        "--train.max_iters=6", "--train.eval_interval=6", "--train.eval_batches=2",
        "--train.batch_size=8", "--train.progress=false", "--train.dtype=float32"]


def _train(tmp_path, shakespeare, name, *extra):
    out = tmp_path / name
    assert main(["train", "debug", "--data", str(shakespeare.path), "--out", str(out),
                 *TINY, *extra]) == 0
    return out


def _eval(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["eval", *args, "--json", "--samples", "2"]) == 0
    return json.loads(capsys.readouterr().out)


def test_language_model_eval_is_the_exact_nll_of_every_next_token(shakespeare, tmp_path, capsys):
    run = _train(tmp_path, shakespeare, "lm", "--model.mode=language_model")
    report = _eval(capsys, str(run / "latest"), "--max-windows", "20")
    assert report["likelihood"] == "causal"
    pre = load_pretrained(str(run / "latest"), "cpu")
    windows = contiguous_windows(Dataset.load(shakespeare.path).val, 17, 20)
    total, count = 0.0, 0
    with torch.no_grad():  # independent reference: float64 log-softmax, one window at a time
        for w in windows:
            logits = pre.model(w[None, :-1])[0, :, :65].double()
            logp = logits - torch.logsumexp(logits, -1, keepdim=True)
            for pos in range(16):
                total -= float(logp[pos, w[pos + 1]])
                count += 1
    assert report["nll_nats_per_char"] == pytest.approx(total / count, rel=1e-5)
    assert report["nll_bits_per_char"] == pytest.approx(total / count / math.log(2), rel=1e-5)
    assert "elbo_nats_per_char" not in report  # a causal model has no masked-diffusion ELBO


def test_diffusion_eval_with_training_settings_equals_training_validation(shakespeare, tmp_path,
                                                                          capsys):
    run = _train(tmp_path, shakespeare, "mdlm")
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [line for line in logged if "val_elbo_nats_per_char" in line][-1]
    # training validation: eval_batches * batch_size // 4 windows at 4 t-points, batch 8
    report = _eval(capsys, str(run / "latest"), "--t-points", "4", "--max-windows", "4",
                   "--batch-size", "8")
    assert report["likelihood"] == "diffusion" and report["val_windows"] == 4
    assert report["elbo_nats_per_char"] == pytest.approx(val["val_elbo_nats_per_char"],
                                                         rel=1e-6)
    assert report["masked_accuracy"] == pytest.approx(val["val_masked_accuracy"])
    # Tiny Shakespeare is ASCII: one byte per character, so bits/byte = bits/char
    assert report["bits_per_byte"] == pytest.approx(report["elbo_bits_per_char"], rel=1e-12)
    default = _eval(capsys, str(run / "latest"), "--max-windows", "4")
    assert default["t_points"] == 8 and default["elbo_nats_per_char"] != report["elbo_nats_per_char"]


def test_bits_per_byte_counts_multibyte_characters():
    from unmask.eval.likelihood import bytes_per_token
    from unmask.text.tokenizers.char import CharTokenizer

    tok = CharTokenizer.from_text("aé€")  # 1, 2 and 3 UTF-8 bytes
    ids = torch.tensor([tok.encode("aé€€")])
    assert bytes_per_token(tok, ids) == pytest.approx((1 + 2 + 3 + 3) / 4)


def test_token_nll_is_the_real_token_log_softmax_by_hand():
    """token_nll (used by every evaluator and loss) against a float64 log-softmax over the
    real tokens written out by hand; the two special columns hold most of the mass and must
    be ignored."""
    from unmask.losses.likelihood import token_nll

    logits = torch.randn(2, 5, 9, generator=torch.Generator().manual_seed(1))
    logits[..., 7:] += 6.0
    targets = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(2))
    got = token_nll(logits, targets, 7)
    for b in range(2):
        for i in range(5):
            row = logits[b, i, :7].double().tolist()
            log_z = math.log(sum(math.exp(v) for v in row))
            assert float(got[b, i]) == pytest.approx(log_z - row[int(targets[b, i])], rel=1e-6)
