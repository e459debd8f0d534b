"""Error messages users read, word for word (issue 16's `message` survivors; see
docs/mutation_judgments.md): each names the problem and the fix, and some of their mutants
raised a TypeError instead of the UserError."""

import pytest
import torch

from tests.objective_runs import case_config
from unmask.config.schema import ModelConfig
from unmask.errors import UserError
from unmask.losses.unmasking import masked_token_loss
from unmask.model.transformer import Transformer
from unmask.noise.corruption import remask_id_for
from unmask.noise.stages import validate_stages
from unmask.objectives.registry import make_objective
from unmask.sampling.base import SampleRequest
from unmask.sampling.causal import CausalSampler
from unmask.sampling.remask import RemaskSampler
from unmask.sampling.unmasking import generate


def _message(fn, *args, error=UserError, **kwargs):
    with pytest.raises(error) as err:
        fn(*args, **kwargs)
    assert type(err.value) is error
    return str(err.value)


def test_remask_target_error_lists_the_targets():
    assert _message(remask_id_for, "bogus", 1, 2) == (
        "remask_target must be one of wrong, mask, got 'bogus'")


def test_stage_list_errors():
    assert _message(validate_stages, [3]) == "stage 0: expected a dict, got int"
    assert _message(validate_stages, []) == "at least one stage is required"


def test_masked_token_loss_range_errors():
    logits, targets = torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long)
    masked = torch.ones(1, 2, dtype=torch.bool)
    assert _message(masked_token_loss, logits, targets, masked, 3,
                    entropy_penalty=-0.5) == "entropy_penalty must be >= 0, got -0.5"
    assert _message(masked_token_loss, logits, targets, masked, 3,
                    uncertainty_factor=1.5) == "uncertainty_factor must be in [0, 1], got 1.5"


def test_unknown_sampling_policy_lists_the_policies():
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=12))
    assert _message(generate, model, vocab_size=10, mask_id=10, length=4, policy="best") == (
        "unknown sampling policy 'best'; choose one of confidence, random, margin, entropy, "
        "threshold, random-threshold, calibrated")


def test_causal_sampler_refuses_holes_before_the_end():
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=12,
                                    mode="language_model"))
    request = SampleRequest(length=2, mask_id=10, vocab_size=10, template_ids=(1, 10, 10, 2))
    assert _message(lambda: list(CausalSampler().generate(model, request))) == (
        "a causal model only continues a prefix: put the [MASK:n] span at the end, or use a "
        "diffusion checkpoint to infill")


def test_remask_sampler_refuses_specials_in_frozen_positions():
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=12))
    tokens = torch.full((1, 4), 10)
    request = SampleRequest(length=4, mask_id=10, vocab_size=10)
    assert _message(RemaskSampler(11).edit, model, request, tokens,
                    torch.ones_like(tokens, dtype=torch.bool), None, error=ValueError) == (
        "frozen positions must hold real tokens, not [MASK] or other specials")


def _objective(name, data, **overrides):
    cfg = case_config(name, data, **overrides)
    cfg.model.vocab_size = data.tokenizer.extended_vocab_size
    return make_objective(cfg, data, torch.device("cpu"))


def test_objective_model_mismatch_messages(shakespeare):
    assert _message(_objective, "remask_binary", shakespeare,
                    **{"model.mode": "language_model"}) == (
        "train.objective=remask_binary needs model.mode=token_classifier")
    assert _message(_objective, "self_correction", shakespeare,
                    **{"model.binary_head": True}) == (
        "train.objective=self_correction needs a token_classifier with the vocabulary head; "
        "for a good/wrong head use train.objective=remask_binary")
    assert _message(_objective, "sequence_classification", shakespeare,
                    **{"model.num_classes": 3}) == (
        f"{shakespeare.path} has no labelled passages; prepare a classification dataset, "
        "e.g. `unmask prepare authors --out data/authors`")
    assert _message(_objective, "sequence_classification", shakespeare,
                    **{"train.batch_size": 1, "model.num_classes": 3}) == (
        "a sequence_classifier standardises its pooled features over the batch (BatchNorm) "
        "and needs train.batch_size >= 2 rows per micro-batch, got 1; train.grad_accum does "
        "not add rows to a forward pass")
