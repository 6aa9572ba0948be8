"""Tests of hfsoup.soup.heads: the table of head layouts agrees with the models transformers builds."""

from __future__ import annotations

import pytest
import torch
from families import family_config
from transformers import AutoConfig, AutoModelForSequenceClassification

from hfsoup.errors import UnknownNameError
from hfsoup.soup.heads import HEAD_LAYOUTS, head_layout


@pytest.mark.parametrize("model_type", sorted(HEAD_LAYOUTS))
def test_each_layout_is_the_head_transformers_builds(model_type):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(family_config(model_type, num_labels=3))
    layout = head_layout(model.config)
    weights = model.state_dict()
    outside = {name for name in weights if not name.startswith(f"{model.base_model_prefix}.")}

    # Every tensor outside the backbone is in the head, every head module has tensors, and no backbone
    # tensor is taken for the head.
    assert outside == {name for name in weights if layout.owns(name)}
    assert all(any(name.startswith(f"{module}.") for name in outside) for module in layout.modules)
    # The final projection has one row per label.
    assert weights[f"{layout.output}.weight"].shape == (3, model.config.hidden_size)
    assert f"{layout.output}.bias" not in weights or weights[f"{layout.output}.bias"].shape == (3,)


@pytest.mark.parametrize(
    "model_type", sorted(t for t, layout in HEAD_LAYOUTS.items() if layout.pools_last_token)
)
def test_last_token_heads_cannot_score_a_batch_without_a_pad_token(model_type):
    model = AutoModelForSequenceClassification.from_config(family_config(model_type, pad_token_id=None))
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])

    assert model(input_ids=ids[:1]).logits.shape == (1, 2)
    with pytest.raises(ValueError, match="no padding token"):
        model(input_ids=ids)


@pytest.mark.parametrize(
    "model_type", sorted(t for t, layout in HEAD_LAYOUTS.items() if not layout.pools_last_token)
)
def test_other_heads_read_the_first_token(model_type):
    # What makes pad_token_id matter only for the last-token heads: the others pool the first token, so a
    # batch without a pad token id is scored like each text alone.
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(family_config(model_type)).eval()
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    mask = (torch.arange(5) < torch.tensor([[5], [4]])).long()

    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[1:, :4]).logits

    torch.testing.assert_close(batch[1:], alone, atol=1e-5, rtol=1e-4)


def test_an_unknown_model_type_is_named_with_the_supported_ones():
    config = AutoConfig.for_model("gpt2", n_embd=32, n_layer=1, n_head=2)
    config.architectures = ["GPT2ForSequenceClassification"]

    with pytest.raises(UnknownNameError) as caught:
        head_layout(config)

    message = str(caught.value)
    assert "\n" not in message
    assert "model type 'gpt2' (GPT2ForSequenceClassification)" in message
    assert "albert, bert, camembert, deberta, deberta-v2, distilbert" in message and "xlm-roberta." in message


def test_roberta_owns_its_dense_layer_but_not_the_backbone():
    layout = HEAD_LAYOUTS["roberta"]

    assert layout.output == "classifier.out_proj" and not layout.pools_last_token
    assert layout.owns("classifier.dense.weight") and layout.owns("classifier.out_proj.bias")
    assert not layout.owns("roberta.pooler.dense.weight") and not layout.owns("classifier_extra.weight")
