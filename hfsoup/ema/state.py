"""The EMA state file: one safetensors file, the tensors in its body, the counters and settings in its metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import InvalidSettingError, first_line

__all__ = ["STATE_FORMAT", "check_state_tensors", "read_state", "write_state"]

STATE_FORMAT = "hfsoup-ema/1"
METADATA_KEY = "hfsoup_ema"
_FIELDS = {"num_updates": int, "last_step": int, "settings": dict}
_FIX = "pass an ema_state.safetensors written by ModelEma.save or EmaTrainerCallback"


def write_state(state: dict, path: str | os.PathLike) -> None:
    """Write a [`ModelEma.state_dict`] to `path`: its tensors on CPU, everything else as JSON metadata.

    Args:
        state: the state, with a `tensors` mapping and JSON-serialisable other fields.
        path: the file to write (its folder must exist).
    """
    fields = {key: value for key, value in state.items() if key != "tensors"}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state["tensors"].items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(fields)})


def read_state(path: str | os.PathLike) -> dict:
    """Read back what [`write_state`] wrote, checking the file before anything is used.

    Args:
        path: the `ema_state.safetensors` file.

    Returns:
        The state: `format`, `num_updates`, `last_step`, `settings` and `tensors` (name to CPU tensor).

    Raises:
        InvalidSettingError: if the file is missing, is not a readable safetensors file (truncated, corrupt,
            a folder), or holds no hfsoup EMA state or a damaged one.

    Example:
        ```python
        >>> state = read_state("out/checkpoint-500/ema_state.safetensors")
        >>> state["last_step"]
        500
        ```
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidSettingError(f"The EMA state file {path} does not exist; {_FIX}.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors: dict[str, torch.Tensor] = load_file(str(path)) if METADATA_KEY in metadata else {}
    except (SafetensorError, OSError) as error:
        raise InvalidSettingError(
            f"The EMA state file {path} is not a readable safetensors file, maybe truncated or corrupt "
            f"({first_line(error)}); {_FIX}."
        ) from error
    if METADATA_KEY not in metadata:
        raise InvalidSettingError(f"{path} holds no hfsoup EMA state (no '{METADATA_KEY}' metadata); {_FIX}.")
    try:
        state = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise InvalidSettingError(
            f"{path} holds a damaged hfsoup EMA state (its metadata is not JSON: {error}); {_FIX}."
        ) from error
    problems = [] if isinstance(state, dict) else ["the metadata is not a JSON object"]
    if not problems and state.get("format") != STATE_FORMAT:
        problems.append(f"format {state.get('format')!r} instead of {STATE_FORMAT!r}")
    problems += [
        f"field {key!r} missing or not of type {kind.__name__}"
        for key, kind in _FIELDS.items()
        if not problems and not isinstance(state.get(key), kind)
    ]
    if problems:
        raise InvalidSettingError(f"{path} holds a damaged hfsoup EMA state ({'; '.join(problems)}); {_FIX}.")
    state["tensors"] = tensors
    return state


def check_state_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Check that a saved state's tensors have exactly the names and shapes of an EMA's.

    Args:
        tensors: the saved tensors, by name.
        expected: the EMA's tensors, by name.

    Raises:
        InvalidSettingError: naming the missing and unexpected tensors, or the first one whose shape differs.
    """
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise InvalidSettingError(
            f"The saved EMA state does not match the model: {len(missing)} tensors missing "
            f"(first: {missing[:3]}), {len(unexpected)} unexpected (first: {unexpected[:3]}); "
            "resume with the model the EMA was saved from, frozen as it was, and the same trainable_only."
        )
    for name, target in expected.items():
        if tensors[name].shape != target.shape:
            raise InvalidSettingError(
                f"The saved EMA state does not match the model: tensor {name!r} has shape "
                f"{tuple(tensors[name].shape)} in the state but {tuple(target.shape)} in the model; "
                "resume with the model the EMA was saved from."
            )
