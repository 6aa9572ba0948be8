"""hfsoup.ema.settings: the three schedules, warm-up and bias correction refused together, the figures."""

from __future__ import annotations

import math

import pytest

from hfsoup import EmaTrainerCallback, InvalidSettingError
from hfsoup.ema.settings import EmaSettings


def test_warmup_defaults_to_on_unless_bias_correction():
    assert EmaSettings().warmup is True
    assert EmaSettings(bias_correction=True).warmup is False
    assert EmaSettings(warmup=False, bias_correction=True).warmup is False
    assert EmaSettings(warmup=False).warmup is False


@pytest.mark.parametrize("build", [EmaSettings, EmaTrainerCallback])
def test_warmup_with_bias_correction_is_refused_in_one_line(build):
    with pytest.raises(InvalidSettingError, match=r"warmup=True and bias_correction=True") as error:
        build(warmup=True, bias_correction=True)
    assert "\n" not in str(error.value)
    assert "pass bias_correction=True alone" in str(error.value)


def test_saved_settings_of_earlier_versions_still_load():
    """A state file written before bias correction existed: a resolved `warmup`, no `bias_correction`."""
    saved = {"decay": 0.9, "warmup": True, "warmup_gamma": 1.0, "warmup_power": 2 / 3, "min_decay": 0.0}
    settings = EmaSettings(**saved, start_step=0, update_every=1, include_buffers=True)
    assert settings.warmup is True and settings.bias_correction is False


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_bias_corrected_decays_give_the_corrected_average(decay):
    """Folding lerps of weight 1 - d_t into a scalar gives sum_i (1-d) d^(t-i) x_i / (1 - d^t) at every t."""
    settings = EmaSettings(decay=decay, bias_correction=True)
    assert settings.decay_for_update(0) == 0.0  # the first update is a copy, exactly
    xs = [math.sin(3.0 * i) for i in range(1, 41)]
    average = 123.0  # whatever the start: the first update overwrites it
    for t, x in enumerate(xs, start=1):
        d_t = settings.decay_for_update(t - 1)
        average = d_t * average + (1 - d_t) * x
        closed = sum((1 - decay) * decay ** (t - i) * xs[i - 1] for i in range(1, t + 1)) / (1 - decay**t)
        assert average == pytest.approx(closed, rel=1e-12, abs=1e-12)
    assert settings.decay_for_update(10**6) == pytest.approx(decay, abs=1e-15)


def test_warmup_and_constant_schedules_are_unchanged():
    warm, constant = EmaSettings(decay=0.99), EmaSettings(decay=0.99, warmup=False)
    assert warm.decay_for_update(0) == 0.0
    assert warm.decay_for_update(7) == pytest.approx(1 - 8 ** (-2 / 3))
    assert constant.decay_for_update(0) == constant.decay_for_update(50) == 0.99


# -- the figures the docstrings state ------------------------------------------------------------------------
WARMUP_REACHES = {0.99: 1_000, 0.999: 31_623, 0.9999: 1_000_000}  # the update whose decay is `decay`
CORRECTION_FADES = {0.99: 458, 0.999: 4_603, 0.9999: 46_049}  # ln(0.01) / ln(decay), rounded
CORRECTION_WITHIN_1_PERCENT = {0.99: 460, 0.999: 4_613, 0.9999: 46_149}  # first t with 1/(1-d^t) <= 1.01


@pytest.mark.parametrize("decay", sorted(WARMUP_REACHES))
def test_documented_figures_are_true(decay):
    warm = EmaSettings(decay=decay)
    update = WARMUP_REACHES[decay]
    assert warm.decay_for_update(update - 1) == decay > warm.decay_for_update(update - 2)
    assert round(math.log(0.01) / math.log(decay)) == CORRECTION_FADES[decay]
    t = CORRECTION_WITHIN_1_PERCENT[decay]
    assert 1 / (1 - decay**t) <= 1.01 < 1 / (1 - decay ** (t - 1))


def test_documented_figures_appear_in_the_docstring():
    doc = " ".join(EmaSettings.__doc__.split())  # the figures live once, in ema/settings.py
    for table in (WARMUP_REACHES, CORRECTION_FADES, CORRECTION_WITHIN_1_PERCENT):
        for figure in table.values():
            assert f"{figure:,}" in doc, figure
