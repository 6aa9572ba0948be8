"""Small data files shaped like well-known Hub datasets, built by the tests (nothing is downloaded).

- `sentiment_parquet`: like imdb / rotten_tomatoes: `text`, and `label` a `ClassLabel` named `neg`, `pos`.
- `nli_jsonl`: like snli / multi_nli: `premise`, `hypothesis`, and `label` as strings (`entailment`,
  `neutral`, `contradiction`), as JSON lines.
- `ratings_csv`: a regression: `sentence`, and `score` a float, as CSV (some cells may be left empty).
- `sentences_jsonl`: `sentence` and whatever `label` values a test needs (`1` in one row, `"yes"` in another,
  `null`), as JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

NLI_LABELS = ("entailment", "neutral", "contradiction")  # snli's label order; sorted, it differs
SENTIMENT = datasets.Features(
    {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
)
_REVIEWS = [
    ("a moving, funny film", 1),
    ("dull and far too long", 0),
    ("the cast is great", 1),
    ("a mess", 0),
]


def sentiment_parquet(folder: Path, rows: int = 48) -> Path:
    """A parquet file whose `label` is a `ClassLabel` (`neg`, `pos`), as `datasets` writes it."""
    path = folder / "reviews.parquet"
    picked = [_REVIEWS[index % len(_REVIEWS)] for index in range(rows)]
    data = {
        "text": [f"{text} {index}" for index, (text, _) in enumerate(picked)],
        "label": [y for _, y in picked],
    }
    datasets.Dataset.from_dict(data, features=SENTIMENT).to_parquet(path)
    return path


def nli_jsonl(folder: Path, rows: int = 48, labels: tuple[str, ...] = NLI_LABELS) -> Path:
    """A JSON lines file of sentence pairs with string labels."""
    path = folder / "nli.jsonl"
    with path.open("w", encoding="utf-8") as file:
        for index in range(rows):
            row = {
                "premise": f"a man plays {index} songs",
                "hypothesis": "a person",
                "label": labels[index % len(labels)],
            }
            file.write(json.dumps(row) + "\n")
    return path


def ratings_csv(folder: Path, rows: int = 48, unrated: tuple[int, ...] = ()) -> Path:
    """A CSV of sentences with a float `score` (a regression, as STS-B); the rows `unrated` have an empty score."""
    path = folder / "ratings.csv"
    scores = ["" if index in unrated else f"{index * 0.37 % 5:.2f}" for index in range(rows)]
    lines = ["sentence,score", *(f"review number {index},{score}" for index, score in enumerate(scores))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sentences_jsonl(folder: Path, labels: list[object], name: str = "sentences.jsonl") -> Path:
    """A JSON lines file of one `sentence` per label, with the labels as given (`None` is written as `null`)."""
    path = folder / name
    rows = [
        json.dumps({"sentence": f"sentence number {index}", "label": label})
        for index, label in enumerate(labels)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path
