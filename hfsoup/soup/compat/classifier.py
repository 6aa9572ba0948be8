"""Classifier checks: a head hfsoup knows, laid out as its family's, and the pad token that decoders pool at.

The head layouts come from [`HEAD_LAYOUTS`]: an ingredient of an unknown model type is refused (its label
rows could not be aligned, nor its head checked), and so is one whose tensors outside the backbone are not
its family's classification head (a masked-LM checkpoint given as a classifier, say). A decoder classifier
reads its logits at each text's last token that is not the pad token, so its config needs a `pad_token_id`
(else it scores one text at a time only) and its tokenizer must pad with that very token.
"""

from __future__ import annotations

from ...errors import UnknownNameError
from ..heads import head_layout
from ..ingredient import Ingredient
from .report import CompatReport

__all__ = ["check_heads", "check_pad_tokens"]


def check_heads(ingredients: list[Ingredient], report: CompatReport) -> None:
    """Each ingredient's model type has a known head layout, and its head tensors lie in that head.

    A bare backbone (no tensor outside it) passes: it has no head to check.
    """
    unknown: set[str] = set()
    for ingredient in ingredients:
        try:
            layout = head_layout(ingredient.config)
        except UnknownNameError as error:
            if ingredient.config.model_type not in unknown:
                unknown.add(ingredient.config.model_type)
                report.errors.append(f"{ingredient.name}: {error}")
            continue
        head = ingredient.head_tensor_names
        strangers = sorted(name for name in head if not layout.owns(name))
        if strangers:
            shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
            problem = f"its tensors {shown} lie outside"
        elif head and f"{layout.output}.weight" not in head:
            problem = f"it lacks {layout.output}.weight, the final projection of"
        else:
            continue
        report.errors.append(
            f"{ingredient.name} is not a {ingredient.config.model_type} sequence classifier: {problem} the "
            f"classification head ({', '.join(layout.modules)}); give checkpoints saved from "
            "AutoModelForSequenceClassification."
        )


def check_pad_tokens(ingredients: list[Ingredient], report: CompatReport) -> None:
    """Decoder classifiers need a `pad_token_id`, and a tokenizer that pads with it.

    Ingredients whose `pad_token_id` differ are refused by the config check, which compares every field.
    """
    for ingredient in ingredients:
        layout = ingredient.head_layout
        if layout is None or not layout.pools_last_token:
            continue
        pad = ingredient.config.pad_token_id
        if pad is None:
            report.errors.append(
                f"{ingredient.name} is a {ingredient.config.model_type} classifier without a pad_token_id in "
                "config.json: it reads its logits at the last token that is not padding, so it cannot score "
                "batches of more than one text; set pad_token_id (for instance to the eos token id, as at "
                "fine-tuning) in its config.json and save its tokenizer with that pad token."
            )
        elif ingredient.has_tokenizer and (theirs := ingredient.tokenizer().pad_token_id) != pad:
            pads = "has no pad token" if theirs is None else f"pads with token id {theirs}"
            report.errors.append(
                f"the tokenizer of {ingredient.name} {pads} but its config has pad_token_id {pad}, so its "
                f"logits would be read at the wrong token; save the tokenizer with the pad token of id {pad} "
                "(tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_token_id))."
            )
