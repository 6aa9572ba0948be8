"""hfsoup.ema.mixed_lerp: the EMA's lerp over weights of other dtypes, fused or staged, equals the plain formula."""

from __future__ import annotations

import pytest
import torch

from hfsoup.ema.mixed_lerp import STAGING_ELEMENTS, STAGING_MIN_ELEMENTS, mixed_lerp_


@pytest.mark.parametrize(
    "numel",
    [
        10,
        STAGING_MIN_ELEMENTS - 1,
        STAGING_MIN_ELEMENTS,
        STAGING_ELEMENTS + 7,
    ],  # whole, whole, staged, 2 chunks
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_mixed_lerp_equals_the_formula_for_every_size_and_dtype(numel, dtype):
    generator = torch.Generator().manual_seed(numel)
    shadow = torch.randn(numel, generator=generator)
    weights = torch.randn(numel, generator=generator).to(dtype)
    expected = shadow + 0.1 * (weights.float() - shadow)

    mixed_lerp_([shadow], [weights], 0.1)

    assert shadow.dtype == torch.float32
    torch.testing.assert_close(shadow, expected, rtol=1e-6, atol=1e-6)


def test_groups_of_several_dtypes_in_one_call():
    shadows = [torch.zeros(4), torch.zeros(STAGING_MIN_ELEMENTS), torch.zeros(3, dtype=torch.float64)]
    weights = [torch.ones(4), torch.ones(STAGING_MIN_ELEMENTS, dtype=torch.bfloat16), torch.ones(3)]

    mixed_lerp_(shadows, weights, 0.25)

    for shadow in shadows:
        assert torch.all(shadow == 0.25)
    assert shadows[2].dtype == torch.float64
