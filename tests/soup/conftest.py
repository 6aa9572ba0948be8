"""Fixtures of the soup tests: model folders of tiny classifiers of several families (see `families.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from families import family_classifier, finetune_like, redraw_head, save_family_folder, swap_labels


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory):
    """`family_dirs(model_type)`: model folders of one family, built on first use, by role.

    `a` and `b` are fine-tune-like variants of one random classifier (a shared head, small perturbations);
    `b_swapped` is `b` saved with its labels, and the rows of its final projection, in reverse order;
    `redrawn` is a third variant whose head matrices were drawn anew, as a run with its own head.
    """
    built: dict[str, dict[str, Path]] = {}

    def folders(model_type: str) -> dict[str, Path]:
        if model_type not in built:
            root = tmp_path_factory.mktemp(model_type)
            base = family_classifier(model_type, seed=0)
            models = {
                "a": finetune_like(base, seed=1),
                "b": finetune_like(base, seed=2),
                "b_swapped": swap_labels(finetune_like(base, seed=2)),
                "redrawn": redraw_head(finetune_like(base, seed=3), seed=103),
            }
            built[model_type] = {role: save_family_folder(m, root / role) for role, m in models.items()}
        return built[model_type]

    return folders
