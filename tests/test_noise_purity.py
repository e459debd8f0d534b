"""Every noise function is a pure function of its arguments and its explicit generator: the
global RNG never enters (a draw from it would make batches irreproducible from the seed), and
another generator seed gives another draw. Plus the edges the noise functions promise."""

import pytest
import torch

from unmask.config.schema import SelfCorrectionConfig
from unmask.errors import UserError
from unmask.noise.corruption import corrupt, corrupt_text_ids
from unmask.noise.masking import mask_tokens, sample_times
from unmask.noise.stages import (
    apply_stage_masking,
    bert_corruption,
    mixed_stage_masking,
    random_ratio_mask,
    sticky_mask,
)
from unmask.sampling.draw import gumbel_argmax64, sample_tokens

V, MASK, WRONG = 30, 30, 31
X = torch.randint(0, V, (16, 48), generator=torch.Generator().manual_seed(0))
STICKY = {"type": "sticky", "target_masked_ratio": 0.5, "p1_probability": 0.2,
          "p2_probability": 0.6, "val_loss_stale_count": 1}
RANDOM = {"type": "random", "max_masked_ratio": 0.9, "val_loss_stale_count": 1}
LOGITS = torch.randn(4, 20, V, generator=torch.Generator().manual_seed(1))

DRAWS = {
    "sample_times": lambda g: sample_times(64, g),
    "sample_times_iid": lambda g: sample_times(64, g, antithetic=False),
    "mask_tokens": lambda g: mask_tokens(X, sample_times(16, g), MASK, g),
    "sticky_mask": lambda g: sticky_mask((16, 48), 0.5, 0.2, 0.6, g),
    "random_ratio_mask": lambda g: random_ratio_mask((16, 48), 0.9, g),
    "bert_corruption": lambda g: bert_corruption(X, torch.ones_like(X, dtype=torch.bool), MASK,
                                                 V, g),
    "apply_stage_masking": lambda g: apply_stage_masking(X, STICKY, MASK, g),
    "mixed_stage_masking": lambda g: mixed_stage_masking(X, [STICKY, RANDOM], MASK, g),
    "corrupt": lambda g: corrupt(X, 0.5, SelfCorrectionConfig(), V, MASK, WRONG, g),
    "corrupt_text_ids": lambda g: corrupt_text_ids(X, 0.3, V, g),
    "sample_tokens": lambda g: sample_tokens(LOGITS, 1.0, 0, 1.0, g),
    "sample_tokens_top": lambda g: sample_tokens(LOGITS, 0.7, 5, 0.9, g),
    "sample_tokens_64": lambda g: sample_tokens(LOGITS, 1.0, 0, 1.0, g, gumbel64=True),
    "gumbel_argmax64": lambda g: gumbel_argmax64(LOGITS, g),
}


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [t for t in vars(out).values() if isinstance(t, torch.Tensor)]


def _same(a, b) -> bool:
    a, b = _flat(a), _flat(b)
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_a_draw_depends_on_its_generator_only(name):
    draw = DRAWS[name]
    torch.manual_seed(123)
    first = draw(torch.Generator().manual_seed(7))
    torch.manual_seed(456)  # another global RNG state: must not matter
    torch.rand(1000)
    again = draw(torch.Generator().manual_seed(7))
    assert _same(first, again)
    assert not _same(first, draw(torch.Generator().manual_seed(8)))


def test_sample_times_default_floor_and_range():
    t = sample_times(4096, torch.Generator().manual_seed(0), antithetic=False)
    assert float(t.min()) >= 1e-3 and float(t.max()) < 1.0
    assert float(t.min()) < 2e-3  # the floor is 1e-3, not higher: the smallest of 4096 draws
    spaced = sample_times(8, torch.Generator().manual_seed(0)).sort().values
    assert torch.allclose(spaced.diff(), torch.full((7,), (1 - 1e-3) / 8), atol=1e-6)


def test_bert_random_tokens_cover_the_whole_vocabulary():
    x = torch.full((200, 100), 3)
    out = bert_corruption(x, torch.ones_like(x, dtype=torch.bool), MASK, V,
                          torch.Generator().manual_seed(2))
    changed = out[(out != MASK) & (out != 3)]
    assert set(changed.unique().tolist()) == set(range(V)) - {3}  # 0 and V - 1 included
    share = (out == MASK).double().mean()
    assert abs(float(share) - 0.8) < 0.01


@pytest.mark.parametrize("rate, swapped", [(0.0, 0), (1.0, 48), (0.25, 12)])
def test_corrupt_text_ids_edges(rate, swapped):
    out, replaced = corrupt_text_ids(X, rate, V, torch.Generator().manual_seed(3))
    assert replaced.dtype == torch.bool and replaced.sum(-1).tolist() == [swapped] * 16
    assert bool((out[replaced] != X[replaced]).all()) and torch.equal(out[~replaced], X[~replaced])


@pytest.mark.parametrize("rate", [-0.01, 1.01])
def test_corrupt_text_ids_names_a_bad_rate(rate):
    with pytest.raises(UserError, match=rf"corruption rate must be in \[0, 1\], got {rate}"):
        corrupt_text_ids(X, rate, V, torch.Generator())


def test_mixed_stage_masking_needs_a_stage():
    with pytest.raises(ValueError, match="mixed_stage_masking needs at least one stage"):
        mixed_stage_masking(X, [], MASK, torch.Generator())
