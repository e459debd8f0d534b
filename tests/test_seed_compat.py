import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_curriculum_task import make_tiny_dataset
from unmask.cli.main import main as unmask_main
from unmask.cli.seed_run import load_seed_run, main
from unmask.config.io import ConfigError, read_config_file
from unmask.config.schema import RunConfig, apply_overrides
from unmask.config.seed_names import translate

REPO = Path(__file__).resolve().parents[1]
NANOGPT_NAMES = {"batch_size": "train.batch_size", "learning_rate": "optim.lr",
                 "max_iters": "train.max_iters", "n_layer": "model.n_layer",
                 "n_head": "model.n_head", "n_embd": "model.n_embd", "dropout": "model.dropout",
                 "eval_interval": "train.eval_interval", "eval_iters": "train.eval_batches",
                 "gradient_accumulation_steps": "train.grad_accum",
                 "weight_decay": "optim.weight_decay", "warmup_iters": "optim.warmup_iters"}
CONFIGS = sorted((REPO / "config").rglob("*.py"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("seed") / "tiny")



def write_config(path: Path, tiny: Path, **extra) -> Path:
    """A seed-style (flat, nanoGPT) config for the tiny dataset, seconds to train."""
    values = {"dataset": str(tiny), "training_type": "unmasking", "device": "cpu",
              "compile": False, "batch_size": 4, "n_layer": 1, "n_head": 2, "n_embd": 16,
              "max_iters": 2, "eval_interval": 2, "eval_iters": 1, "log_interval": 1,
              "out_dir": str(path.parent / "out"), "dtype": "float32", **extra}
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()), encoding="utf-8")
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_translate(path):
    raw = read_config_file(path)
    dotted, special, _ = translate(raw)
    assert special["dataset"].startswith("shakespeare_char")
    cfg = apply_overrides(RunConfig(), dotted)  # every translated key and value is valid
    # the nanoGPT names a file sets arrive unchanged where they belong
    for seed_name, dotted_name in NANOGPT_NAMES.items():
        if seed_name in raw:
            section, field = dotted_name.split(".")
            assert getattr(getattr(cfg, section), field) == raw[seed_name], seed_name
    assert "batch_size" in raw


def test_experiment1_maps_to_run_config(tiny):
    run = load_seed_run([str(REPO / "config/shakespeare_diffusion/experiment1.py")],
                        {"data": str(tiny)})
    cfg = run.cfg
    assert (cfg.train.batch_size, cfg.train.grad_accum, cfg.train.max_iters) == (192, 12, 8000)
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.warmup_iters) == (1e-3, 3e-5, 2000)
    assert (cfg.optim.lr_decay_iters, cfg.optim.weight_decay) == (8000, 2e-2)
    assert cfg.optim.grad_clip == 0.0
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd) == (6, 6, 384)
    assert cfg.model.dropout == 0.2
    assert cfg.model.block_size == 32 and cfg.model.mode == "token_classifier"  # from the dataset
    assert cfg.train.objective == "unmasking" and cfg.train.compile == "true"
    assert (cfg.train.eval_interval, cfg.train.log_interval) == (200, 20)
    assert cfg.train.eval_batches == 20
    assert cfg.curriculum.weight_loss_by_mask_ratio and cfg.curriculum.uncertainty_factor == 0.1
    assert not cfg.curriculum.enable_entropy_penalty
    assert cfg.curriculum.entropy_penalty_start_iter == 6000
    assert run.out_dir == Path("out") and run.resume is None
    assert cfg.train.wandb_project == "experiments_diffusion"


def test_overrides_decay_and_resume(tiny, tmp_path):
    cfg_file = write_config(tmp_path / "c.py", tiny, decay_lr=False, learning_rate=2e-3,
                            init_from="resume")
    run = load_seed_run([str(cfg_file)], {"max_iters": "7", "dropout": "0.1",
                                          "train.threads": "1", "compile": "True"})
    assert run.cfg.train.max_iters == 7 and run.cfg.model.dropout == 0.1
    assert run.cfg.train.threads == 1 and run.cfg.train.compile == "true"
    assert run.cfg.optim.min_lr == run.cfg.optim.lr == 2e-3 and run.cfg.optim.warmup_iters == 0
    assert run.resume == "auto"  # init_from='resume' without a pretrained path: continue out_dir


@pytest.mark.parametrize("values, message", [
    ({"learnig_rate": 1e-3}, "unknown config key 'learnig_rate'; did you mean 'learning_rate'?"),
    ({"n_layers": 4}, "did you mean 'n_layer'?"),
    ({"unmasking_stages": []},
     "UNMASKING_STAGES in data/shakespeare_char_diffusion/training_config.py"),
    ({"eval_only": True}, "unmask eval"),
])
def test_user_mistakes_are_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        translate(values)


def test_names_without_effect_are_accepted_with_a_note():
    _, _, notes = translate({"bias": False, "use_rope": True, "always_save_checkpoint": False})
    assert notes == []
    _, _, notes = translate({"bias": True, "attention_type": "causal"})
    assert len(notes) == 2 and notes[0].startswith("bias=True has no effect")


def test_unknown_training_type_and_block_size_mismatch(tiny, tmp_path, capsys):
    cfg_file = write_config(tmp_path / "c.py", tiny)
    with pytest.raises(ConfigError, match="unknown training_type 'unmask'"):
        load_seed_run([str(cfg_file)], {"training_type": "unmask"})
    assert main([str(cfg_file), "--block_size=16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("train_run.py: error: Block size mismatch: dataset 'tiny' requires "
                       "block_size=32, got 16")


def test_unprepared_dataset_says_to_run_prepare(tmp_path, capsys):
    raw = make_tiny_dataset(tmp_path / "raw", prepared=False)
    cfg_file = write_config(tmp_path / "c.py", raw)
    assert main([str(cfg_file)]) == 2
    assert "dataset 'raw' is not prepared; run `python " in capsys.readouterr().err
    assert main([str(cfg_file), "--dataset=no_such_dataset"]) == 2
    assert "dataset 'no_such_dataset' not found" in capsys.readouterr().err


def test_train_run_py_smoke(tiny, tmp_path):
    cfg_file = write_config(tmp_path / "c.py", tiny)
    done = subprocess.run([sys.executable, str(REPO / "train_run.py"), str(cfg_file),
                           "--max_iters=2", "--train.progress=false", "--bias=True"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["step"] == 2 and "curriculum_stage" in result
    assert "Per-stage validation losses:" in done.stdout
    assert "train_run.py: note: bias=True has no effect" in done.stderr
    assert (tmp_path / "out" / "latest" / "model.safetensors").is_file()


def test_unmask_train_runs_seed_configs(tiny, tmp_path, capsys):
    cfg_file = write_config(tmp_path / "c.py", tiny)
    assert unmask_main(["train", str(cfg_file), "--max_iters=1", "--train.progress=false",
                        "--out", str(tmp_path / "run")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 1
    assert (tmp_path / "run" / "latest" / "model.safetensors").is_file()
    assert unmask_main(["train", str(cfg_file), "--max_iter=1"]) == 2
    assert "did you mean 'max_iters'" in capsys.readouterr().err
