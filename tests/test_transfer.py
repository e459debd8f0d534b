import pytest
import torch

from unmask.config.presets import resolve_config
from unmask.data.authors import prepare_authors
from unmask.data.dataset import Dataset, DatasetError
from unmask.model.checkpoint import CheckpointError
from unmask.train.trainer import Trainer

TINY = {"model.n_layer": 2, "model.n_head": 2, "model.n_embd": 32, "model.block_size": 33,
        "train.progress": False, "train.batch_size": 8, "train.eval_batches": 2,
        "train.log_interval": 5}
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    return Dataset.load(prepare_authors(tmp_path_factory.mktemp("authors") / "a",
                                        passage_length=32))


@pytest.fixture(scope="module")
def pretrained(authors, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    cfg = resolve_config("debug", {**TINY, "train.max_iters": 3, "train.eval_interval": 3})
    Trainer(cfg, authors, out, **QUIET).run()
    return out / "latest"


def classifier_config(pretrained, mode, **extra):
    return resolve_config("debug", {
        **TINY, "model.mode": "sequence_classifier", "train.max_iters": 5,
        "train.eval_interval": 5, "transfer.init_from": "resume",
        "transfer.pretrained_checkpoint_path": str(pretrained),
        "transfer.transfer_learning_mode": mode, **extra})


def test_authors_split_by_position_without_overlap(authors):
    from unmask.data.authors import load_passages
    from unmask.text.reader import load_text

    p = load_passages(authors.path)
    assert set(p["train_y"].tolist()) == set(p["val_y"].tolist()) == {0, 1, 2}
    # Shakespeare's passages, in book order: the first 90 % train, the rest validate
    ids = torch.tensor(authors.tokenizer.encode(load_text("tinyshakespeare")[1]))
    n = len(ids) // 32
    passages = ids[: n * 32].view(n, 32)
    n_train = int(n * 0.9)
    assert torch.equal(p["train_x"][p["train_y"] == 0], passages[:n_train])
    assert torch.equal(p["val_x"][p["val_y"] == 0], passages[n_train:])
    assert authors.meta["class_names"] == ["Shakespeare", "Shelley", "Austen"]


def test_feature_extraction_freezes_backbone_exactly(authors, pretrained, tmp_path, capsys):
    trainer = Trainer(classifier_config(pretrained, "feature_extraction"), authors, tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    after = trainer.model.state_dict()
    for name, value in before.items():
        if name.startswith(("classifier", "pool_norm")):  # the head and its statistics
            assert not torch.equal(value, after[name]), name
        else:
            assert torch.equal(value, after[name]), name  # bit-identical
    out = capsys.readouterr().out
    total = sum(p.numel() for p in trainer.model.parameters())  # the tied head counts once
    trainable = 32 * 3 + 3
    assert "*** TRANSFER LEARNING OPTIMIZER SETUP ***" in out
    assert f"Total parameters: {total:,}" in out
    assert f"Trainable parameters: {trainable:,}" in out
    assert f"Frozen parameters: {total - trainable:,}" in out
    assert f"Trainable percentage: {100 * trainable / total:.2f}%" in out
    assert "Backbone frozen" in out


def test_fine_tuning_changes_every_parameter(authors, pretrained, tmp_path):
    trainer = Trainer(classifier_config(pretrained, "fine_tuning"), authors, tmp_path, **QUIET)
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    trainer.run()
    for name, value in trainer.model.named_parameters():
        assert not torch.equal(before[name], value), name


def test_pretrained_backbone_is_loaded(authors, pretrained, tmp_path):
    from unmask.model.checkpoint import load_checkpoint

    trainer = Trainer(classifier_config(pretrained, "fine_tuning"), authors, tmp_path, **QUIET)
    weights = load_checkpoint(pretrained)["weights"]
    assert torch.equal(trainer.model.state_dict()["blocks.0.attn.qkv.weight"],
                       weights["blocks.0.attn.qkv.weight"])


def test_architecture_mismatch_names_fields(authors, pretrained, tmp_path):
    cfg = classifier_config(pretrained, "fine_tuning", **{"model.n_layer": 3, "model.n_embd": 64})
    with pytest.raises(ValueError, match=r"n_layer \(pretrained 2, this run 3\).*n_embd"):
        Trainer(cfg, authors, tmp_path, **QUIET)


def test_missing_pretrained_checkpoint_names_path(authors, tmp_path):
    cfg = classifier_config(tmp_path / "nope", "fine_tuning")
    with pytest.raises(CheckpointError, match="nope"):
        Trainer(cfg, authors, tmp_path, **QUIET)


def test_mode_not_supported_by_dataset(shakespeare, tmp_path):
    cfg = resolve_config("debug", {"model.mode": "sequence_classifier", "model.num_classes": 3})
    with pytest.raises(DatasetError, match="does not support model.mode=sequence_classifier"):
        Trainer(cfg, shakespeare, tmp_path, **QUIET)


def test_sequence_classifier_learns(authors, tmp_path):
    from unmask.data.authors import load_passages

    cfg = resolve_config("debug", {**TINY, "model.mode": "sequence_classifier",
                                   "train.max_iters": 150, "train.eval_interval": 150,
                                   "train.batch_size": 16, "optim.lr": 3e-3})
    result = Trainer(cfg, authors, tmp_path, **QUIET).run()
    majority = torch.bincount(load_passages(authors.path)["val_y"]).max().item() / len(
        load_passages(authors.path)["val_y"])
    assert result["val_accuracy"] > majority + 0.1
    assert result["val_loss"] < 0.9 * torch.log(torch.tensor(3.0)).item()
