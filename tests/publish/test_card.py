"""Tests of hfsoup.card: the model card's Hub metadata and body, and soup.yaml, from hand-built results."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard import REGEX_YAML_BLOCK
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from hfsoup.cli.output import format_scores
from hfsoup.errors import RecipeError
from hfsoup.publish.card import build_card, soup_yaml, write_card_files
from hfsoup.recipe import load_soup_yaml
from hfsoup.result import (
    BEST,
    ENSEMBLE,
    SOUP,
    SOUP_FORMAT,
    UNIFORM,
    IngredientRecord,
    MergeResult,
    SubsetScore,
)

SHA_A, SHA_B = "a1b2c3d" + "0" * 33, "b2c3d4e" + "1" * 33


def pair_scores(selection: tuple[float, float], report: tuple[float, float]) -> dict:
    """MRPC-like scores: accuracy, f1 and their mean as the leaderboard score, on both halves."""
    return {
        role: {"accuracy": acc, "f1": f1, "score": (acc + f1) / 2}
        for role, (acc, f1) in (("selection", selection), ("report", report))
    }


def make_result(*, local_only: bool = False, dataset: str = "nyu-mll/glue") -> MergeResult:
    """A greedy MRPC soup of two Hub ingredients and a local folder (or of the folder alone)."""
    hub = [
        IngredientRecord(
            "alice/bert-mrpc",
            "alice/bert-mrpc",
            "alice/bert-mrpc",
            SHA_A,
            pair_scores((0.81, 0.86), (0.80, 0.85)),
            True,
            0.5,
        ),
        IngredientRecord(
            "bob/bert-mrpc",
            "bob/bert-mrpc@v1",
            "bob/bert-mrpc",
            SHA_B,
            pair_scores((0.80, 0.85), (0.79, 0.84)),
        ),
    ]
    local = IngredientRecord(
        "seed3", "runs/seed3", None, None, pair_scores((0.79, 0.84), (0.78, 0.83)), True, 0.5
    )
    ingredients = [local] if local_only else [*hub, local]
    last = len(ingredients) - 1
    return MergeResult(
        task="mrpc",
        dataset=dataset,
        splits={"selection": "selection", "report": "report"},
        metric="glue",
        score_key="mean of f1 and accuracy",
        method="greedy",
        method_paper="https://arxiv.org/abs/2203.05482",
        method_description="Add ingredients best-first while the held-out score improves.",
        ingredients=ingredients,
        order_added=[0] if local_only else [0, last],
        log=[
            "start with #0 'alice/bert-mrpc': best individual score 0.8350",
            "reject #1 'bob/bert-mrpc': candidate soup scores 0.8300, not > 0.8350",
            "accept #2 'seed3': candidate soup scores 0.8400 > 0.8350",
        ],
        candidates={
            SOUP: pair_scores((0.83, 0.88), (0.8213456789, 0.8712345678)),
            UNIFORM: pair_scores((0.82, 0.87), (0.81, 0.86)),
            BEST: ingredients[0].scores,
            ENSEMBLE: pair_scores((0.84, 0.885), (0.83, 0.875)),
        },
        best_ingredient=0,
        compatibility=[
            "ingredient 'seed3' has hidden_dropout_prob 0.2, the first 0.1: training-only, averaged"
        ],
        command="hfsoup merge alice/bert-mrpc bob/bert-mrpc@v1 runs/seed3 --task mrpc --method greedy",
        recipe={"task": "mrpc", "models": ["alice/bert-mrpc", "bob/bert-mrpc@v1", "runs/seed3"], "seed": 0},
        seed=0,
        label_names=["not_equivalent", "equivalent"],
        text_columns=["sentence1", "sentence2"],
    )


def front_matter(card: ModelCard) -> dict:
    return yaml.safe_load(REGEX_YAML_BLOCK.search(str(card)).group(2))


def test_metadata_lists_hub_ingredients_as_merged_base_models():
    card = build_card(make_result(), repo_id="carol/mrpc-soup")
    data = card.data
    assert data.base_model == ["alice/bert-mrpc"]  # bob/bert-mrpc was rejected: it is not in the soup
    assert data.base_model_relation == "merge"
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification"
    assert {"model-soup", "hfsoup", "greedy", "merge"} <= set(data.tags)
    assert data.datasets == ["nyu-mll/glue"]
    assert data.model_name == "carol/mrpc-soup"
    assert data.metrics == ["accuracy", "f1"]


def test_eval_results_are_the_soups_report_scores():
    result = make_result()
    card = build_card(result, repo_id="carol/mrpc-soup")
    entries = {entry.metric_type: entry for entry in card.data.eval_results}
    assert set(entries) == {"accuracy", "f1"}  # no selection score, no derived "score"
    for key, entry in entries.items():
        assert entry.metric_value == pytest.approx(result.candidates[SOUP]["report"][key], rel=1e-5)
        assert entry.metric_value != result.candidates[SOUP]["selection"][key]
        assert (entry.task_type, entry.dataset_type) == ("text-classification", "nyu-mll/glue")
        assert (entry.dataset_config, entry.dataset_split) == ("mrpc", "validation")
        assert "report half of validation" in entry.dataset_name
    assert entries["f1"].metric_value == 0.871235  # 6 significant digits


def test_card_round_trips_through_its_text_and_the_model_index():
    card = build_card(make_result(), repo_id="carol/mrpc-soup")
    again = ModelCard(str(card))
    assert again.data.to_dict() == card.data.to_dict()
    assert again.data.eval_results == card.data.eval_results
    assert again.text == card.text

    meta = front_matter(card)
    index = meta["model-index"]
    assert index[0]["name"] == "carol/mrpc-soup"
    assert index[0]["results"][0]["dataset"]["split"] == "validation"
    assert {m["type"] for m in index[0]["results"][0]["metrics"]} == {"accuracy", "f1"}
    assert meta["base_model_relation"] == "merge"
    name, results = model_index_to_eval_results(index)
    assert (name, results) == ("carol/mrpc-soup", card.data.eval_results)
    assert eval_results_to_model_index(name, results) == index


def test_body_has_every_ingredient_the_comparison_log_and_command():
    result = make_result()
    text = build_card(result, repo_id="carol/mrpc-soup").text
    for record in result.ingredients:
        assert record.name in text
    assert "[`a1b2c3d`](https://huggingface.co/alice/bert-mrpc/tree/" + SHA_A + ")" in text
    assert "`runs/seed3` (local folder)" in text
    assert "leaves them out: `runs/seed3`" in text
    for row in ("**Soup (greedy)**", "Uniform soup", "Best ingredient (alice/bert-mrpc", "Logit ensemble (3"):
        assert row in text
    assert "3 forward passes per input" in text
    for line in [*result.log, *result.compatibility]:
        assert line in text
    assert f"```bash\n{result.command}\n```" in text
    assert "https://arxiv.org/abs/2203.05482" in text
    assert 'AutoModelForSequenceClassification.from_pretrained("carol/mrpc-soup")' in text
    assert "seeded with 0" in text and "never chosen" in text
    assert "0 = not_equivalent, 1 = equivalent" in text


def test_tables_have_both_splits_and_the_selected_ingredients():
    text = build_card(make_result(), repo_id="carol/mrpc-soup").text
    header = next(line for line in text.splitlines() if line.startswith("| Model |"))
    assert header.split(" | ")[1:] == [
        "selection score",
        "selection accuracy",
        "selection f1",
        "report score",
        "report accuracy",
        "report f1 |",
    ]
    soup_row = next(line for line in text.splitlines() if line.startswith("| **Soup"))
    assert "| 0.8213 | 0.8712 |" in soup_row and "| 0.8300 | 0.8800 |" in soup_row
    rows = [line for line in text.splitlines() if re.match(r"\| \d \|", line)]
    assert len(rows) == 3
    assert rows[0].endswith("| yes (added #1) | 0.5000 |")
    assert rows[1].endswith("| no | 0.0000 |")
    assert rows[2].endswith("| yes (added #2) | 0.5000 |")


def test_local_only_soup_has_no_base_model_and_still_renders():
    card = build_card(make_result(local_only=True), name="my-soup")
    again = ModelCard(str(card))
    assert again.data.get("base_model") is None
    assert "base_model_relation" not in front_matter(card)
    assert again.data.model_name == "my-soup"
    assert len(again.data.eval_results) == 2
    assert "`runs/seed3` (local folder)" in again.text


def test_local_dataset_is_not_listed_as_a_hub_dataset(tmp_path):
    folder = tmp_path / "glue-copy"
    folder.mkdir()
    card = build_card(make_result(dataset=str(folder)))
    assert card.data.get("datasets") is None
    assert {entry.dataset_type for entry in card.data.eval_results} == {"glue-copy"}
    assert card.data.model_name == "mrpc-greedy-soup"


def test_nan_metric_is_left_out_of_the_metadata_and_shown_as_na():
    result = make_result()
    result.candidates[SOUP]["report"]["f1"] = math.nan
    card = build_card(result, repo_id="carol/mrpc-soup")
    assert [entry.metric_type for entry in card.data.eval_results] == ["accuracy"]
    assert "n/a" in card.text
    ModelCard(str(card))  # still parses


def test_mnli_reports_the_mismatched_split_whole_and_the_matched_half():
    scores = {
        role: {"accuracy": value, "score": value}
        for role, value in (("selection", 0.7), ("report", 0.68), ("validation_mismatched", 0.69))
    }
    record = IngredientRecord("alice/mnli", "alice/mnli", "alice/mnli", SHA_A, scores, True, 1.0)
    result = MergeResult(
        task="mnli",
        dataset="nyu-mll/glue",
        splits={
            "selection": "selection",
            "report": "report",
            "validation_mismatched": "validation_mismatched",
        },
        metric="glue",
        score_key="accuracy",
        method="uniform",
        method_paper="https://arxiv.org/abs/2203.05482",
        method_description="The plain average.",
        ingredients=[record],
        order_added=[0],
        log=[],
        candidates={key: scores for key in (SOUP, UNIFORM, BEST, ENSEMBLE)},
        best_ingredient=0,
        recipe={"task": "mnli"},
        label_names=["entailment", "neutral", "contradiction"],
        text_columns=["premise", "hypothesis"],
        halved_split="validation_matched",
    )
    card = build_card(result, repo_id="carol/mnli-soup")
    splits = {(entry.dataset_split, entry.metric_value) for entry in card.data.eval_results}
    assert splits == {("validation_matched", 0.68), ("validation_mismatched", 0.69)}
    text = card.text
    header = next(line for line in text.splitlines() if line.startswith("| Model |"))
    # The score is the accuracy, so each split has one column, and the mismatched split comes last.
    assert header == "| Model | selection accuracy | report accuracy | validation_mismatched accuracy |"
    assert "## Soup log" not in text
    assert "halves of the `validation_matched` split" in text
    assert "No warning and no note." in text
    assert 'tokenizer("The first sentence.", "The second sentence."' in text


def test_explicit_splits_are_named_as_given():
    result = make_result()
    result.splits = {"selection": "validation[:50%]", "report": "validation[50%:]"}
    card = build_card(result, repo_id="carol/mrpc-soup")
    assert {entry.dataset_split for entry in card.data.eval_results} == {"validation[50%:]"}
    assert "seeded with" not in card.text
    assert "`report` (validation[50%:])" in card.text


def test_soup_yaml_round_trip(tmp_path):
    result = make_result()
    path = tmp_path / "soup.yaml"
    path.write_text(soup_yaml(result), encoding="utf-8")
    data = load_soup_yaml(path)
    assert data["format"] == SOUP_FORMAT == "hfsoup-soup/1"
    assert data["recipe"] == result.recipe
    assert data["hfsoup_version"] and re.fullmatch(r"\d{4}-\d\d-\d\d", data["date"])
    assert data["command"] == result.command
    assert data["method"]["name"] == "greedy"
    assert [i["pinned_reference"] for i in data["ingredients"]] == [
        f"alice/bert-mrpc@{SHA_A}",
        f"bob/bert-mrpc@{SHA_B}",
        "runs/seed3",
    ]
    assert data["ingredients"][1]["revision"] == SHA_B and data["ingredients"][2]["repo_id"] is None
    assert data["ingredients"][0]["scores"]["report"]["f1"] == 0.85
    assert [(s["index"], s["weight"]) for s in data["soup"]] == [(0, 0.5), (2, 0.5)]
    assert data["results"][SOUP]["report"] == {"accuracy": 0.821346, "f1": 0.871235, "score": 0.84629}
    assert set(data["results"]) == {SOUP, UNIFORM, BEST, ENSEMBLE}
    assert data["log"] == result.log and data["compatibility"] == result.compatibility
    assert data["best_ingredient"] == 0


def test_soup_yaml_keeps_plain_data_and_nan():
    result = make_result()
    result.recipe["splits"] = ("selection", "report")
    result.candidates[ENSEMBLE]["report"]["f1"] = math.nan
    data = yaml.safe_load(soup_yaml(result))
    assert data["recipe"]["splits"] == ["selection", "report"]
    assert math.isnan(data["results"][ENSEMBLE]["report"]["f1"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("format: hfsoup-soup/2\nrecipe: {task: mrpc}\n", "'hfsoup-soup/2'"),
        ("recipe: {task: mrpc}\n", "format None"),
        ("- a list\n", "format None"),
        ("format: hfsoup-soup/1\n", "no 'recipe' mapping"),
        ("format: [unclosed\n", "not valid YAML"),
    ],
)
def test_load_soup_yaml_refuses_bad_files_in_one_line(tmp_path, text, expected):
    path = tmp_path / "soup.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as caught:
        load_soup_yaml(path)
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_load_soup_yaml_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_soup_yaml(tmp_path / "nope.yaml")


def test_write_card_files(tmp_path):
    result = make_result()
    folder = tmp_path / "mrpc-soup"
    folder.mkdir()
    write_card_files(result, folder)
    card = ModelCard.load(folder / "README.md")
    assert card.data.model_name == "mrpc-soup"
    assert card.data.base_model == ["alice/bert-mrpc"]
    assert load_soup_yaml(folder / "soup.yaml")["recipe"] == result.recipe

    staging = tmp_path / ".mrpc-soup.partial-x"
    staging.mkdir()
    write_card_files(result, staging, name="mrpc-soup")
    assert ModelCard.load(staging / "README.md").data.model_name == "mrpc-soup"
    write_card_files(result, staging, repo_id="carol/mrpc-soup", name="mrpc-soup")
    assert ModelCard.load(staging / "README.md").data.model_name == "carol/mrpc-soup"


def test_regression_task_card():
    result = make_result()
    result.task, result.label_names = "stsb", []
    result.score_key = "mean of pearson and spearmanr"
    tables = [*result.candidates.values(), *(record.scores for record in result.ingredients)]
    for scores in {id(scores): scores for scores in tables}.values():  # the best ingredient's appears twice
        for role, metrics in scores.items():
            scores[role] = {
                "pearson": metrics["accuracy"],
                "spearmanr": metrics["f1"],
                "score": metrics["score"],
            }
    card = build_card(result, repo_id="carol/stsb-soup")
    assert {entry.metric_type for entry in card.data.eval_results} == {"pearson", "spearmanr"}
    assert {entry.dataset_config for entry in card.data.eval_results} == {"stsb"}
    assert "one predicted score per input (a regression)" in card.text and "id2label" not in card.text


# --- what the card claims: only the soup's ingredients, the common base, the license, no local path --------


def test_rejected_ingredients_are_not_base_models():
    result = make_result()
    result.ingredients[0].selected, result.ingredients[0].weight = False, 0.0
    result.ingredients[1].selected, result.ingredients[1].weight = True, 0.5
    result.order_added = [1, 2]
    card = build_card(result, repo_id="carol/mrpc-soup")
    assert card.data.base_model == ["bob/bert-mrpc"] and card.data.base_model_relation == "merge"


def test_local_soup_of_a_known_base_is_its_finetune():
    result = make_result(local_only=True)
    result.base_model = "google-bert/bert-base-uncased"
    card = build_card(result, name="my-soup")
    assert card.data.base_model == ["google-bert/bert-base-uncased"]
    assert card.data.base_model_relation == "finetune"
    assert "fine-tuned from [google-bert/bert-base-uncased](https://huggingface.co/google-bert/" in card.text
    assert ModelCard(str(card)).data.base_model == ["google-bert/bert-base-uncased"]


def test_hub_ingredients_in_the_soup_make_it_a_merge_even_with_a_known_base():
    result = make_result()
    result.base_model = "google-bert/bert-base-uncased"
    card = build_card(result, repo_id="carol/mrpc-soup")
    assert card.data.base_model == ["alice/bert-mrpc"] and card.data.base_model_relation == "merge"


def test_the_common_license_is_carried_over():
    result = make_result()
    result.license = "apache-2.0"
    assert build_card(result).data.license == "apache-2.0"
    assert front_matter(build_card(result))["license"] == "apache-2.0"
    assert "license" not in front_matter(build_card(make_result()))


def test_local_dataset_path_appears_only_as_its_name(tmp_path, monkeypatch):
    folder = tmp_path / "private" / "glue-copy"
    folder.mkdir(parents=True)
    card = build_card(make_result(dataset=str(folder)), name="my-soup")
    before_reproduce = str(card).split("## Reproduce")[0]
    assert str(tmp_path) not in before_reproduce and "glue-copy" in before_reproduce
    assert {entry.dataset_name.split(" (")[0] for entry in card.data.eval_results} == {"glue-copy"}
    monkeypatch.chdir(tmp_path)  # a relative local folder reads like user/name, but it is no Hub dataset
    card = build_card(make_result(dataset="private/glue-copy"), name="my-soup")
    assert card.data.get("datasets") is None
    assert {entry.dataset_type for entry in card.data.eval_results} == {"glue-copy"}


def test_uniform_method_has_one_uniform_row_in_the_card_and_the_table():
    result = make_result()
    result.method = "uniform"
    del result.candidates[UNIFORM]  # the uniform soup is the soup: the pipeline scores it once
    text = build_card(result, repo_id="carol/mrpc-soup").text
    assert text.count("| **Soup (uniform)** |") == 1 and "Uniform soup (all ingredients)" not in text
    table = format_scores(result)
    assert sum("uniform soup" in line for line in table.splitlines()) == 1


def test_subset_search_shows_its_top_subsets_in_the_card_the_yaml_and_the_terminal():
    result = make_result()
    result.method, result.log = "exhaustive", []
    result.top_subsets = [SubsetScore([0, 2], 0.855), SubsetScore([0], 0.835), SubsetScore([0, 1, 2], 0.83)]
    text = build_card(result, repo_id="carol/mrpc-soup").text
    assert (
        "## Subset search" in text
        and "all 7 non-empty subsets" in text
        and "best 3 (ties go to the smaller subset" in text
    )
    assert "| 1 | #0 alice/bert-mrpc, #2 seed3 | 0.8550 |" in text
    assert "| 3 | #0 alice/bert-mrpc, #1 bob/bert-mrpc, #2 seed3 | 0.8300 |" in text
    assert yaml.safe_load(soup_yaml(result))["top_subsets"] == [
        {"ingredients": [0, 2], "selection_score": 0.855},
        {"ingredients": [0], "selection_score": 0.835},
        {"ingredients": [0, 1, 2], "selection_score": 0.83},
    ]
    lines = format_scores(result).splitlines()
    start = lines.index("Best of 7 subsets by selection score (the first is the soup):")
    assert lines[start + 1 :] == [
        "  1. 0.8550  #0 alice/bert-mrpc, #2 seed3",
        "  2. 0.8350  #0 alice/bert-mrpc",
        "  3. 0.8300  #0 alice/bert-mrpc, #1 bob/bert-mrpc, #2 seed3",
    ]
    # The other methods have no subsets: no section, no lines, an empty list.
    other = make_result()
    assert "## Subset search" not in build_card(other).text and "subsets" not in format_scores(other)
    assert yaml.safe_load(soup_yaml(other))["top_subsets"] == []


def test_learned_soup_shows_its_coefficients_in_the_card_and_records_them_exactly(tmp_path):
    result = make_result()
    result.method, result.order_added = "learned", [0, 1, 2]
    result.log = ["epoch 1/1: mean batch loss 0.6000; coefficients #0 0.4000, #1 0.3500, #2 0.2500"]
    exact = [0.1 + 1 / 3, 0.35, 0.55 - 1 / 3]  # not representable in 6 digits
    result.coefficients = {"all": exact}
    for record, weight in zip(result.ingredients, exact, strict=True):
        record.selected, record.weight = True, weight
    text = build_card(result, repo_id="carol/mrpc-soup").text
    assert "## Learned coefficients" in text and "one per ingredient" in text
    assert "| Tensor group | #0 alice/bert-mrpc | #1 bob/bert-mrpc | #2 seed3 |" in text
    assert "| all | 0.4333 | 0.3500 | 0.2167 |" in text
    path = tmp_path / "soup.yaml"
    path.write_text(soup_yaml(result), encoding="utf-8")
    assert load_soup_yaml(path)["coefficients"] == {"all": exact}  # exactly, for the replay
    assert "## Learned coefficients" not in build_card(make_result()).text
    assert yaml.safe_load(soup_yaml(make_result()))["coefficients"] == {}
