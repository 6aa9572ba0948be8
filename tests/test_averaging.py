import math

import pytest
import torch

from hfsoup.averaging import add_scaled_, ema_decay, lerp_, running_mean_


def test_ema_decay_without_warmup_is_constant():
    assert [ema_decay(t, 0.99, warmup=False) for t in (0, 1, 1000)] == [0.99, 0.99, 0.99]


def test_ema_decay_warmup_follows_the_formula_and_clamps():
    for t in (0, 1, 5, 50, 10_000):
        expected = min(0.999, max(0.1, 1 - (1 + t / 2.0) ** -0.75))
        assert ema_decay(t, 0.999, warmup_gamma=2.0, warmup_power=0.75, min_decay=0.1) == pytest.approx(
            expected
        )
    assert ema_decay(0, 0.999) == 0.0
    assert ema_decay(10**9, 0.999) == 0.999


def test_lerp_converts_dtype_and_matches_reference():
    targets = [torch.zeros(3), torch.ones(2, 2)]
    sources = [torch.arange(3.0).bfloat16(), torch.full((2, 2), 3.0).bfloat16()]
    lerp_(targets, sources, 0.25)
    assert targets[0].dtype == torch.float32
    torch.testing.assert_close(targets[0], torch.tensor([0.0, 0.25, 0.5]))
    torch.testing.assert_close(targets[1], torch.full((2, 2), 1.5))


def test_running_mean_is_the_mean_of_all_samples():
    samples = [torch.randn(4, dtype=torch.float64) for _ in range(7)]
    avg = [torch.empty(4, dtype=torch.float64)]
    for count, sample in enumerate(samples):
        running_mean_(avg, [sample], count)
    torch.testing.assert_close(avg[0], torch.stack(samples).mean(0))


def test_add_scaled_accumulates_a_weighted_sum():
    acc = [torch.zeros(2)]
    for weight, value in ((0.5, torch.tensor([2.0, 4.0])), (0.25, torch.tensor([4.0, 0.0]))):
        add_scaled_(acc, [value], weight)
    torch.testing.assert_close(acc[0], torch.tensor([2.0, 2.0]))
    assert math.isclose(float(acc[0].sum()), 4.0)
