"""What a merge produced: every score of every candidate on every split, in plain data.

The pipeline fills a [`MergeResult`]; the model card and `soup.yaml` are rendered from it and nothing else,
so what is published is exactly what was measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

Scores = dict[str, dict[str, float]]
"""Metrics by split: `{"selection": {"accuracy": 0.84, "f1": 0.88, "score": 0.86}, "report": {...}}`."""

SOUP_FORMAT = "hfsoup-soup/1"
"""The format of `soup.yaml`: written by `card.soup_yaml`, read by `recipe.load_soup_yaml`."""

# The rows every result reports, beside each ingredient: the chosen soup and the three references.
SOUP, UNIFORM, BEST, ENSEMBLE = "soup", "uniform_soup", "best_ingredient", "ensemble"
AVERAGED_HEAD = "soup_averaged_head"
"""With `--refit-head`, the soup before its head was refitted (its head averaged like the rest)."""


@dataclass
class IngredientRecord:
    """One ingredient as it went into the soup.

    Args:
        name: the display name (repo id or folder name).
        reference: the reference as given (`user/name@v1`, `runs/seed1`).
        repo_id: the Hub repository, or `None` for a local folder.
        revision: the resolved commit sha of a Hub ingredient (pinned), or `None` for a local folder.
        scores: its metrics on every split.
        selected: whether the soup includes it.
        weight: its weight in the soup (0 when not selected).
        content_hash: `sha256:` of a local ingredient's weight files (`None` for the Hub, pinned by `revision`).
    """

    name: str
    reference: str
    repo_id: str | None
    revision: str | None
    scores: Scores
    selected: bool = False
    weight: float = 0.0
    content_hash: str | None = None

    @property
    def pinned_reference(self) -> str:
        """A reference that names exactly these weights: `repo@sha` for the Hub, the folder otherwise."""
        return f"{self.repo_id}@{self.revision}" if self.repo_id and self.revision else self.reference


@dataclass
class SubsetScore:
    """One subset of the ingredients scored by a subset search (method `exhaustive`).

    Args:
        indices: the ingredients in the subset, in ascending order.
        score: the selection score of their uniform soup.
    """

    indices: list[int]
    score: float


@dataclass
class MergeResult:
    """Everything a merge measured and chose.

    A plain merge (no task, no dataset: the soup is only averaged) measures nothing: its `task`, `dataset`,
    `metric`, `score_key` and `best_ingredient` are `None`, and its `splits`, `candidates` and ingredients'
    `scores` are empty.

    Args:
        task: the task name (`"mrpc"`), or the name of the dataset that defined it.
        dataset: the dataset id or path the splits came from.
        splits: split role -> split spec, e.g. `{"selection": "selection", "report": "report"}`; the
            default `selection`/`report` are the seeded halves of the validation split.
        metric: the `evaluate` metric used.
        score_key: what the selection score is (`"mean of f1 and accuracy"`).
        method: the soup method's registry name.
        method_paper: the method's paper link.
        method_description: one line on what the method does.
        ingredients: every ingredient with its scores, in the order given.
        order_added: indices of the selected ingredients in the order the soup took them.
        log: one line per soup step (every greedy accept and reject).
        candidates: scores of `soup`, `uniform_soup`, `best_ingredient` and `ensemble` on every split.
        best_ingredient: index of the ingredient with the best selection score.
        compatibility: the compatibility report's warnings and notes.
        command: the exact command that reproduces the result.
        recipe: the recipe as a plain dict (what `soup.yaml` replays).
        seed: the seed of the default split halves.
        base_model: the common pre-trained base the ingredients were fine-tuned from, when known (a Hub id).
        license: the license every ingredient declares, when they agree.
        top_subsets: the best subsets of a subset search, best first, with their selection scores (empty for
            the other methods).
        coefficients: a learned soup's mixing coefficients, tensor group -> one per ingredient, exactly as
            fitted (empty for the other methods).
        label_names: the soup's labels in label-id order (the task's; a plain merge's first ingredient's); empty
            for a regression, or when no ingredient names its labels.
        text_columns: the task's one or two text columns (empty for a plain merge).
        halved_split: the split the default `selection` and `report` halves are cut from.
        start: how the ingredients' runs started, when a sweep trained them (`start.json` of its
            `init-<key>/`: `head_init`, and a linear probe's training and validation scores).
        gain: the soup minus the best ingredient on the report split, `{"split", "soup_minus_best", "low",
            "high", "level", "resamples", "seed"}`: a paired bootstrap interval over the split's rows.
        refit_head: with `--refit-head`, how the soup's head was refitted: `{"split", "rows", "projection",
            "probe_l2", "train", "seconds"}`; `None` when the head was averaged.
        missing_runs: the runs of the ingredients' sweep that were not finished when it was souped
            (`hfsoup finetune --soup-only --allow-missing`); empty when every run was.
        shared_rows: report split -> how many of its rows the selection split also read
            (`--allow-overlapping-splits`); empty when they are disjoint.
        rates: when a sweep's runs span several learning rates, `{"mixed": False, "rates", "selection": rate ->
            the soup of that rate's runs on the selection split, "chosen"}`, or `{"mixed": True, "rates"}` when
            the recipe soups them together (`mix_rates: true`); `None` for one rate.
    """

    task: str | None
    dataset: str | None
    splits: dict[str, str]
    metric: str | None
    score_key: str | None
    method: str
    method_paper: str
    method_description: str
    ingredients: list[IngredientRecord]
    order_added: list[int]
    log: list[str]
    candidates: dict[str, Scores]
    best_ingredient: int | None
    compatibility: list[str] = field(default_factory=list)
    command: str = ""
    recipe: dict = field(default_factory=dict)
    seed: int = 0
    base_model: str | None = None
    license: str | None = None
    top_subsets: list[SubsetScore] = field(default_factory=list)
    coefficients: dict[str, list[float]] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    text_columns: list[str] = field(default_factory=list)
    halved_split: str = "validation"
    start: dict | None = None
    gain: dict | None = None
    refit_head: dict | None = None
    missing_runs: list[str] = field(default_factory=list)
    shared_rows: dict[str, int] = field(default_factory=dict)
    rates: dict | None = None

    @property
    def selected(self) -> list[IngredientRecord]:
        """The selected ingredients, in the order the soup took them."""
        return [self.ingredients[index] for index in self.order_added]

    def to_dict(self) -> dict:
        """Every field in plain JSON types (dicts, lists, strings, numbers, `None`): `hfsoup merge --json`.

        Ingredients and subsets become dicts of their fields; each ingredient also gets its
        `pinned_reference`, the reference that names exactly its weights.

        Example:
            ```python
            >>> result.to_dict()["candidates"]["soup"]["report"]["score"]
            0.8412
            ```
        """
        data = asdict(self)
        for record, ingredient in zip(data["ingredients"], self.ingredients, strict=True):
            record["pinned_reference"] = ingredient.pinned_reference
        return data
