"""Tests of hfsoup.finetune.publish, against the test Hub: raw on main, EMA on `ema`, pushed once."""

from __future__ import annotations

import json

from hub_server import HubServer
from huggingface_hub import HfApi

from hfsoup.eval import get_task
from hfsoup.finetune import finetune_sweep
from hfsoup.recipe import FinetuneRecipe


def test_runs_are_pushed_raw_on_main_and_ema_on_a_branch_once(hub, tmp_path, tiny_sweep, glue_hub_dir):
    recipe = FinetuneRecipe(runs=[{"seed": 1}], push_to_hub="alice/tiny-mrpc", **tiny_sweep)
    options = dict(dataset=str(glue_hub_dir), work_dir=tmp_path, token=HubServer.ALICE)
    ((plan, _folders),) = finetune_sweep(recipe, get_task("mrpc"), **options)
    repo_id = f"alice/tiny-mrpc-{plan.name}"
    api = HfApi(endpoint=hub.url, token=HubServer.ALICE)
    refs = {branch.name: branch.target_commit for branch in api.list_repo_refs(repo_id).branches}
    assert set(refs) == {"main", "ema"}
    for kind, branch in (("raw", "main"), ("ema", "ema")):
        remote = hub.repos[repo_id].resolve(branch).files["model.safetensors"]
        assert remote == (plan.folder / kind / "model.safetensors").read_bytes()
    assert hub.repos[repo_id].private
    record = json.loads((plan.folder / "run.json").read_text())
    assert record["pushed"] == {"repo": repo_id, "commits": {"raw": refs["main"], "ema": refs["ema"]}}
    commits = len(hub.requests)
    finetune_sweep(recipe, get_task("mrpc"), **options)  # finished and pushed: nothing to do
    assert not [r for r in hub.requests[commits:] if r.method == "POST"]
    assert "hf_alice_token" not in "".join(
        p.read_text(errors="ignore")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix in (".json", ".md", ".yaml")
    )
