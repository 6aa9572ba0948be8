"""Tests of the soup method registry (hfsoup.soup.methods): names, papers, and the shared call checks."""

from __future__ import annotations

import pytest
import torch

from hfsoup.errors import InvalidSettingError, UnknownNameError
from hfsoup.soup.methods import SOUP_METHODS, get_method


def test_registry_entries_have_name_paper_and_one_line_description():
    assert set(SOUP_METHODS) == {"uniform", "weighted", "greedy", "exhaustive", "learned", "model_stock"}
    for key, method in SOUP_METHODS.items():
        assert method.name == key
        assert get_method(key) is method
        stock = "https://arxiv.org/abs/2403.19522"
        assert method.paper == (stock if key == "model_stock" else "https://arxiv.org/abs/2203.05482")
        assert method.description and "\n" not in method.description


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as info:
        get_method("fisher")
    message = str(info.value)
    assert "'fisher'" in message and "\n" not in message
    assert all(name in message for name in SOUP_METHODS)


def test_a_soup_of_no_ingredients_is_refused():
    with pytest.raises(InvalidSettingError, match="at least one ingredient"):
        get_method("uniform")([], {"w": torch.zeros(2)})


def test_methods_that_choose_by_score_say_so():
    assert {name for name, method in SOUP_METHODS.items() if method.chooses} == {"greedy", "exhaustive"}


def test_only_the_learned_soup_fits_and_the_others_ignore_its_arguments():
    assert {name for name, method in SOUP_METHODS.items() if method.fits} == {"learned"}
    target = {"w": torch.zeros(2)}

    class One:
        name = "one"

        def tensors(self, names=None):
            yield "w", torch.ones(2)

    result = get_method("uniform")([One()], target, gradient=lambda epoch, batch: 1 / 0)
    assert result.weights == [1.0] and torch.equal(target["w"], torch.ones(2))
