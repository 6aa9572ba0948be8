"""Tests of hfsoup.soup.methods.learned: the learned soup's math, its convex soup, its fit and its replay."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from cli_helpers import quick_mrpc, run
from datasets import Dataset
from safetensors.torch import load_file
from soup_helpers import MemoryIngredient
from tiny_models import finetuned_variant, tiny_bert, tiny_tokenizer

from hfsoup.errors import InvalidSettingError
from hfsoup.eval import get_task
from hfsoup.eval.loss import SelectionLoss
from hfsoup.soup.methods import LearnedSettings, get_method
from hfsoup.soup.methods.learned import ALL, SoupMixer, logit_gradient, tensor_groups

GROUPS = ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.pooler", "classifier"]


class BatchLoss:
    """A fixed batch of random token ids per step: the cross-entropy of the weights in `model`, and its gradient."""

    def __init__(self, model, batches: int = 2, rows: int = 6):
        generator = torch.Generator().manual_seed(7)
        self.model = model
        self.batches = [
            (
                torch.randint(5, 60, (rows, 12), generator=generator),
                torch.randint(0, 2, (rows,), generator=generator),
            )
            for _ in range(batches)
        ]
        self.calls = 0

    def __len__(self):
        return len(self.batches)

    def loss(self, batch: int) -> torch.Tensor:
        ids, labels = self.batches[batch]
        return torch.nn.functional.cross_entropy(self.model(input_ids=ids).logits, labels)

    def __call__(self, epoch, batch):
        self.calls += 1
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = self.loss(batch)
            loss.backward()
        grads = {name: p.grad for name, p in self.model.named_parameters()}
        self.model.zero_grad(set_to_none=True)
        return float(loss.detach()), grads


@pytest.fixture(scope="module")
def variants():
    """Three tiny BERTs moved apart from one base (shared head), as in-memory ingredients."""
    base = tiny_bert(seed=0)
    states = [finetuned_variant(base, seed, scale=0.3).state_dict() for seed in (1, 2, 3)]
    return [MemoryIngredient(f"ft{i}", dict(state)) for i, state in enumerate(states)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def mrpc_loss(model, tokenizer, batch_size=8):
    """The real `SelectionLoss` on 16 MRPC-like rows spelled with the tiny vocabulary."""
    words = ["the cat is", "a dog of", "the sun is up", "a tree", "of the sea", "is a bird"]
    rows = {
        "sentence1": [words[i % 6] + f" {i}" for i in range(16)],
        "sentence2": [words[(i * 5) % 6] + f" {i % 3}" for i in range(16)],
        "label": [i % 2 for i in range(16)],
    }
    return SelectionLoss(
        model, tokenizer, get_task("mrpc"), Dataset.from_dict(rows), batch_size=batch_size, seed=3
    )


def floats(ingredient) -> dict[str, torch.Tensor]:
    return {name: t for name, t in ingredient.state.items() if t.is_floating_point()}


def convex_reference(ingredients, coefficients, groups) -> dict[str, torch.Tensor]:
    """`sum_i alpha[group, i] * theta_i` in float64, from recorded coefficients."""
    states = [floats(i) for i in ingredients]
    return {
        name: sum(c * s[name].double() for c, s in zip(coefficients[groups[name]], states, strict=True))
        for name in states[0]
    }


@pytest.mark.parametrize("per_layer", [False, True])
def test_streaming_gradient_equals_autograd_through_the_stacked_soup(variants, per_layer):
    model = tiny_bert(seed=5)
    target = dict(model.state_dict())
    mixer = SoupMixer(variants, target, per_layer)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(len(mixer.groups), len(variants), generator=generator, dtype=torch.float64)
    gradient = BatchLoss(model)
    loss, streamed = logit_gradient(mixer, logits, gradient, 0, 1)

    # The paper's formulation: every ingredient stacked, the soup a differentiable function of the logits.
    stacked_logits = logits.clone().requires_grad_(True)
    alpha = torch.softmax(stacked_logits, dim=1).float()
    groups = tensor_groups(floats(variants[0])) if per_layer else dict.fromkeys(floats(variants[0]), ALL)
    rows = {group: row for row, group in enumerate(mixer.groups)}
    soup = {
        name: sum(alpha[rows[groups[name]], i] * v.state[name] for i, v in enumerate(variants))
        for name in floats(variants[0])
    }
    buffers = {name: t for name, t in variants[0].state.items() if not t.is_floating_point()}
    ids, labels = gradient.batches[1]
    output = torch.func.functional_call(model, {**soup, **buffers}, (ids,))
    expected_loss = torch.nn.functional.cross_entropy(output.logits, labels)
    expected_loss.backward()

    assert loss == pytest.approx(expected_loss.item(), rel=1e-5)
    assert streamed.shape == (5 if per_layer else 1, 3)
    assert stacked_logits.grad.abs().max() > 1e-4  # a gradient worth comparing
    torch.testing.assert_close(streamed, stacked_logits.grad, rtol=1e-3, atol=1e-6)


def test_the_soup_is_the_convex_combination_its_coefficients_record(variants):
    model = tiny_bert(seed=5)
    target = dict(model.state_dict())
    settings = LearnedSettings(epochs=3, learning_rate=0.2)
    result = get_method("learned")(variants, target, gradient=BatchLoss(model), settings=settings)

    assert list(result.coefficients) == [ALL]
    alpha = result.coefficients[ALL]
    assert all(a >= 0 for a in alpha) and math.fsum(alpha) == pytest.approx(1, abs=1e-12)
    assert max(alpha) - min(alpha) > 0.05  # the fit moved away from the uniform start
    assert result.weights == pytest.approx(alpha)
    assert result.selected == [0, 1, 2] and result.method == "learned"
    reference = convex_reference(variants, result.coefficients, dict.fromkeys(floats(variants[0]), ALL))
    for name, expected in reference.items():
        torch.testing.assert_close(target[name].double(), expected, rtol=1e-6, atol=1e-6, msg=name)
    assert [step.epoch for step in result.log] == [1, 2, 3]
    assert result.log[0].describe().startswith("epoch 1/3: mean batch loss ")


def test_per_layer_coefficients_differ_per_group_and_make_the_soup(variants):
    model = tiny_bert(seed=5)
    target = dict(model.state_dict())
    settings = LearnedSettings(per_layer=True, epochs=3, learning_rate=0.2)
    result = get_method("learned")(variants, target, gradient=BatchLoss(model), settings=settings)

    assert list(result.coefficients) == GROUPS
    rows = [tuple(round(a, 6) for a in row) for row in result.coefficients.values()]
    assert len(set(rows)) == len(GROUPS)
    for row in result.coefficients.values():
        assert all(a > 0 for a in row) and math.fsum(row) == pytest.approx(1, abs=1e-12)
    reference = convex_reference(variants, result.coefficients, tensor_groups(floats(variants[0])))
    for name, expected in reference.items():
        torch.testing.assert_close(target[name].double(), expected, rtol=1e-6, atol=1e-6, msg=name)
    # Each ingredient's weight is its share of the parameters; the shares sum to 1.
    assert math.fsum(result.weights) == pytest.approx(1)


def test_the_fit_lowers_the_selection_loss_below_the_uniform_soups(variants):
    model = tiny_bert(seed=5)
    target = dict(model.state_dict())
    loss = BatchLoss(model, batches=1, rows=16)  # one batch, the whole split: each step sees the same loss
    get_method("uniform")(variants, target)
    uniform_loss, _ = loss(0, 0)
    result = get_method("learned")(
        variants, target, gradient=loss, settings=LearnedSettings(epochs=8, learning_rate=0.1)
    )
    fitted_loss, _ = loss(0, 0)
    assert result.log[0].loss == pytest.approx(uniform_loss, rel=1e-5)  # the fit starts at the uniform soup
    assert fitted_loss < uniform_loss - 1e-4
    assert [step.loss for step in result.log] == sorted((step.loss for step in result.log), reverse=True)


def test_recorded_coefficients_rebuild_the_same_soup_without_fitting(variants, tokenizer):
    model = tiny_bert(seed=5)
    target = dict(model.state_dict())
    fit = get_method("learned")(
        variants,
        target,
        gradient=mrpc_loss(model, tokenizer),
        settings=LearnedSettings(per_layer=True, epochs=2),
    )
    fitted = {name: t.clone() for name, t in target.items()}
    for tensor in target.values():
        tensor.zero_()
    gradient = BatchLoss(model)
    replay = get_method("learned")(
        variants,
        target,
        gradient=gradient,
        settings=LearnedSettings(per_layer=True, coefficients=fit.coefficients),
    )
    assert gradient.calls == 0 and replay.log == []
    assert replay.coefficients == fit.coefficients and replay.weights == fit.weights
    assert all(torch.equal(target[name], tensor) for name, tensor in fitted.items())


def test_the_fit_is_deterministic(variants, tokenizer):
    results = []
    for _ in range(2):
        model = tiny_bert(seed=5)
        results.append(
            get_method("learned")(
                variants,
                dict(model.state_dict()),
                gradient=mrpc_loss(model, tokenizer),
                settings=LearnedSettings(epochs=2),
            ).coefficients
        )
    assert results[0] == results[1]


def test_tensor_groups_are_embeddings_each_layer_and_the_head():
    names = list(floats(MemoryIngredient("x", dict(tiny_bert().state_dict()))))
    groups = tensor_groups(names)
    assert list(dict.fromkeys(groups.values())) == GROUPS
    assert groups["bert.encoder.layer.1.attention.self.query.weight"] == "bert.encoder.layer.1"
    assert groups["bert.pooler.dense.bias"] == "bert.pooler"
    assert tensor_groups(["transformer.h.0.attn.weight", "transformer.ln_f.weight", "score.weight"]) == {
        "transformer.h.0.attn.weight": "transformer.h.0",
        "transformer.ln_f.weight": "transformer.ln_f",
        "score.weight": "score",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [0.5, 0.3, 0.2]}, "takes no weights"),
        ({}, "needs `gradient`"),
        ({"settings": LearnedSettings(epochs=0)}, "epochs >= 1"),
        ({"settings": LearnedSettings(learning_rate=-1.0)}, "learning rate > 0"),
        ({"settings": LearnedSettings(coefficients={"classifier": [1.0, 0.0, 0.0]})}, "tensor groups"),
        ({"settings": LearnedSettings(coefficients={ALL: [0.5, 0.5]})}, "summing to 1"),
        ({"settings": LearnedSettings(coefficients={ALL: [0.5, 0.6, -0.1]})}, "summing to 1"),
    ],
)
def test_bad_arguments_are_refused_with_one_line(variants, kwargs, message):
    target = dict(tiny_bert(seed=5).state_dict())
    with pytest.raises(InvalidSettingError, match=message) as info:
        get_method("learned")(variants, target, **kwargs)
    assert "\n" not in str(info.value)


def test_merge_method_learned_end_to_end_and_its_replay(tmp_path, capsys, tiny_ingredient_dirs, glue_hub_dir):
    args = [*quick_mrpc(tiny_ingredient_dirs, glue_hub_dir), "--method", "learned", "--learned-per-layer"]
    code, out, err = run(capsys, "merge", *args, "--learned-epochs", "2", "--output-dir", tmp_path / "soup")
    assert code == 0, err
    assert "learned soup" in out
    recorded = yaml.safe_load((tmp_path / "soup" / "soup.yaml").read_text())
    assert recorded["method"]["name"] == "learned" and recorded["recipe"]["learned_epochs"] == 2
    assert list(recorded["coefficients"]) == GROUPS
    assert [line.split(":")[0] for line in recorded["log"]] == ["epoch 1/2", "epoch 2/2"]
    assert "## Learned coefficients" in (tmp_path / "soup" / "README.md").read_text()

    # The written soup is the convex combination of the ingredients' files that soup.yaml records.
    soup = load_file(tmp_path / "soup" / "model.safetensors")
    states = [load_file(folder / "model.safetensors") for folder in tiny_ingredient_dirs]
    groups = tensor_groups(name for name, tensor in soup.items() if tensor.is_floating_point())
    for name, group in groups.items():
        expected = sum(
            c * s[name].double() for c, s in zip(recorded["coefficients"][group], states, strict=True)
        )
        torch.testing.assert_close(soup[name].double(), expected, rtol=1e-6, atol=1e-6, msg=name)

    # The replay reuses the coefficients (no fitting: an empty log) and rebuilds the same weights.
    code, _, err = run(
        capsys, "merge", "--recipe", tmp_path / "soup" / "soup.yaml", "--output-dir", tmp_path / "again"
    )
    assert code == 0, err
    replayed = yaml.safe_load((tmp_path / "again" / "soup.yaml").read_text())
    assert replayed["coefficients"] == recorded["coefficients"] and replayed["log"] == []
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert soup.keys() == again.keys() and all(torch.equal(soup[name], again[name]) for name in soup)
