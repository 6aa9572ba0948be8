"""Norms, distances and angles of the ingredients' updates, against a direct float64 computation."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertForSequenceClassification

from hfsoup.soup import load_ingredient, load_ingredients
from hfsoup.soup.geometry import pairwise_geometry


def _direct_geometry(ingredient_dirs, base_dir):
    base = BertForSequenceClassification.from_pretrained(base_dir).state_dict()
    keys = [k for k in base if not k.startswith("classifier.")]
    updates = []
    for folder in ingredient_dirs:
        weights = BertForSequenceClassification.from_pretrained(folder).state_dict()
        updates.append(torch.cat([(weights[k].double() - base[k].double()).flatten() for k in keys]))
    return updates, torch.cat([base[k].double().flatten() for k in keys])


@pytest.mark.parametrize("bare_base", [False, True])
def test_pairwise_geometry_matches_a_direct_computation(
    bare_base, tiny_base_dir, tiny_ingredient_dirs, tmp_path
):
    base_dir = tiny_base_dir
    if bare_base:  # a backbone saved without its head and without the "bert." prefix
        base_dir = tmp_path / "bare"
        BertForSequenceClassification.from_pretrained(tiny_base_dir).bert.save_pretrained(base_dir)
    updates, base = _direct_geometry(tiny_ingredient_dirs, tiny_base_dir)

    geometry = pairwise_geometry(
        load_ingredients([str(d) for d in tiny_ingredient_dirs]), load_ingredient(str(base_dir))
    )

    assert geometry.tensors == 39 and geometry.parameters == base.numel()
    assert geometry.base_norm == pytest.approx(base.norm().item(), rel=1e-12)
    for i, ui in enumerate(updates):
        assert geometry.update_norms[i] == pytest.approx(ui.norm().item(), rel=1e-9)
        for j, uj in enumerate(updates):
            assert geometry.distances[i][j] == pytest.approx((ui - uj).norm().item(), rel=1e-6, abs=1e-9)
            cosine = (ui @ uj / (ui.norm() * uj.norm())).clamp(-1, 1).item()
            assert geometry.angles[i][j] == pytest.approx(math.degrees(math.acos(cosine)), abs=1e-4)
    assert 60 < geometry.angles[0][1] < 120  # independent noise is nearly orthogonal
    text = geometry.to_text()
    assert "Angles between updates (degrees):" in text and tiny_ingredient_dirs[2].name in text
