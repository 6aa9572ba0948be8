"""Push a finished run to the Hub: its raw weights on `main`, its EMA on `ema`, its epochs on `epoch-<k>`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..recipe.finetune import FinetuneRecipe
from ..sources.push import push_folder

logger = logging.getLogger(__name__)

__all__ = ["push_run", "run_repo"]

_BRANCHES = {"raw": None, "ema": "ema"}  # None: the default branch


def run_repo(recipe: FinetuneRecipe, run_name: str) -> str:
    """The repository of a run: `user/prefix-<run>`."""
    return f"{recipe.push_to_hub}-{run_name}"


def push_run(
    folder: Path, kinds: list[str], recipe: FinetuneRecipe, *, token: str | bool | None = None
) -> dict:
    """Push the model folders of the finished run in `folder`, once; its `run.json` records the commits.

    A run already pushed to the same repository is not pushed again (its weights cannot have changed: a run
    with other settings has another folder).

    Returns:
        `{"repo": ..., "commits": {kind: sha}}`.
    """
    record_file = folder / "run.json"
    record = json.loads(record_file.read_text(encoding="utf-8"))
    repo_id = run_repo(recipe, folder.name)
    pushed = record.get("pushed")
    if pushed and pushed.get("repo") == repo_id and set(pushed.get("commits", {})) == set(kinds):
        logger.info("%s was already pushed to %s", folder.name, repo_id)
        return pushed
    commits = {}
    for kind in kinds:
        branch = _BRANCHES.get(kind, kind)
        commit = push_folder(
            folder / kind,
            repo_id,
            token=token,
            private=recipe.private,
            revision=branch,
            commit_message=f"hfsoup finetune: {folder.name} ({kind} weights)",
        )
        commits[kind] = commit.oid
        logger.info("Pushed %s/%s to %s%s", folder.name, kind, repo_id, f"@{branch}" if branch else "")
    record["pushed"] = {"repo": repo_id, "commits": commits}
    record_file.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return record["pushed"]
