"""Tests of hfsoup.cli_parser: every command and its flags parse; the help documents the exit codes."""

from __future__ import annotations

import pytest

from hfsoup.cli.parser import build_parser


def test_finetune_takes_a_recipe_and_its_overrides():
    args = build_parser().parse_args(
        ["finetune", "r.yaml", "--dataset", "d", "--base", "b", "--output-dir", "o", "--no-soup", "--json"]
    )
    assert (args.command, args.recipe, args.dataset, args.base, args.output_dir) == (
        "finetune",
        "r.yaml",
        "d",
        "b",
        "o",
    )
    assert args.no_soup and args.json and not args.overwrite


def test_merge_flags_and_the_json_default():
    args = build_parser().parse_args(["merge", "a", "b", "--task", "mrpc", "--weights", "0.5", "0.5"])
    assert args.models == ["a", "b"] and args.weights == [0.5, 0.5] and args.json is False
    assert build_parser().parse_args(["push", "out", "you/soup"]).json is False


def test_the_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert all(code in text for code in ("1 user error", "2 usage error", "3 internal error", "130"))


def test_a_missing_command_is_a_usage_error():
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([])
    assert caught.value.code == 2
