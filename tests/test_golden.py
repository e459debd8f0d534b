"""Refactors reproduce the recorded losses and samples (tests/golden/harness.py).

Losses are compared to 1e-5 relative: on the recording machine they match to the last bit,
and another CPU's kernels may differ in the last bits only; a changed computation moves them
by far more. Sample texts must match exactly.
"""

import json

import pytest

from tests.golden.harness import GOLDEN, record


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return record(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_every_objective_reproduces_its_losses(recorded, golden):
    assert recorded["objectives"].keys() == golden["objectives"].keys()
    for name, expected in golden["objectives"].items():
        got = recorded["objectives"][name]
        assert len(got["train_loss"]) == 20, name
        for key in ("train_loss", "val_loss"):
            assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), (name, key)


def test_every_policy_reproduces_its_samples(recorded, golden):
    assert recorded["samples"] == golden["samples"]
