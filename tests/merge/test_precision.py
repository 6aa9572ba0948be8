"""Precisions: the dtype a soup is saved in by default, and the scoring copy of a float32 model."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_bert

from hfsoup.merge.precision import scoring_model, stored_dtype, torch_dtype


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["BF16", "BF16"], torch.bfloat16),
        (["F16"], torch.float16),
        (["BF16", "F32"], torch.float32),
        (["BF16", "F16"], torch.float32),  # neither holds the other
        (["F64", "F32"], torch.float64),
        (["F8_E4M3"], torch.float32),
        ([], torch.float32),
    ],
)
def test_the_stored_dtype_holds_every_ingredient_dtype(names, expected):
    assert stored_dtype(names) == expected


def test_recipe_names_are_torch_dtypes():
    assert [torch_dtype(name) for name in ("float32", "bfloat16", "float16")] == [
        torch.float32,
        torch.bfloat16,
        torch.float16,
    ]


def test_the_scoring_model_is_the_model_itself_or_a_cast_copy():
    model = tiny_bert(seed=0)
    assert scoring_model(model, torch.float32) is model
    copy = scoring_model(model, torch.bfloat16)
    assert copy is not model and copy.dtype == torch.bfloat16 and model.dtype == torch.float32
    for (name, value), original in zip(copy.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(value, original.to(value.dtype)), name
    # Tied tensors stay tied in the copy, as in the model.
    assert copy.state_dict().keys() == model.state_dict().keys()
