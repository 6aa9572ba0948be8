"""Which ways of sharding a model the EMA supports, and the checks that refuse the others early.

An EMA copies each parameter as the process sees it. That is the whole weight in one process or under DDP,
and a regular shard under FSDP2 (`fully_shard`, whose parameters are `DTensor`s of the model's shapes). Under
DeepSpeed ZeRO-3 a parameter outside `GatheredParameters` is an empty placeholder, and under FSDP1
(`FullyShardedDataParallel`) the weights live in one flat parameter per wrapped module: an EMA of those would
average nothing, or a flat vector no model can load, so both are refused before the first step.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import InvalidSettingError

__all__ = ["SUPPORTED", "check_supported", "model_sharding_problem", "trainer_sharding_problem"]

SUPPORTED = "one process, DDP, or FSDP2 (`fully_shard`, or Trainer's fsdp_config={'version': 2})"


def _fsdp1_class() -> type | None:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # torch built without distributed support
        return None
    return FullyShardedDataParallel


def model_sharding_problem(*models: nn.Module | None) -> str | None:
    """Name the unsupported sharding one of `models` is under, or return `None`.

    Args:
        models: the model as the Trainer or the user holds it; `None`s are skipped.

    Returns:
        A short description such as `"DeepSpeed ZeRO-3 (parameter 'x' is partitioned)"`, or `None`.
    """
    fsdp1 = _fsdp1_class()
    for model in models:
        if model is None:
            continue
        if fsdp1 is not None and any(isinstance(module, fsdp1) for module in model.modules()):
            return "FSDP1 (the model is wrapped in FullyShardedDataParallel)"
        for name, param in model.named_parameters():
            if hasattr(param, "ds_id") or hasattr(param, "ds_numel"):
                return f"DeepSpeed ZeRO-3 (parameter '{name}' is partitioned)"
            if getattr(param, "_is_flat_param", False):
                return f"FSDP1 (parameter '{name}' is a flat parameter)"
    return None


def trainer_sharding_problem(args: Any, accelerator: Any = None) -> str | None:
    """Name the unsupported sharding a Trainer's arguments or Accelerate state ask for, or return `None`.

    Args:
        args: the `TrainingArguments` (`deepspeed`, `fsdp`, `fsdp_config` are read).
        accelerator: the Trainer's `Accelerator`, whose state holds the plugins Accelerate actually uses.

    Returns:
        A short description such as `"DeepSpeed ZeRO-3"`, or `None`.
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    deepspeed = getattr(args, "deepspeed", None)
    stage = (deepspeed.get("zero_optimization") or {}).get("stage") if isinstance(deepspeed, dict) else None
    state = getattr(accelerator, "state", None)
    plugin = getattr(state, "deepspeed_plugin", None)
    if is_deepspeed_zero3_enabled() or stage == 3 or getattr(plugin, "zero_stage", None) == 3:
        return "DeepSpeed ZeRO-3"
    plugin = getattr(state, "fsdp_plugin", None)
    if plugin is not None and getattr(plugin, "fsdp_version", 1) == 1:
        return "FSDP1 (Accelerate's FSDP plugin at version 1)"
    config = getattr(args, "fsdp_config", None)
    if getattr(args, "fsdp", None) and isinstance(config, dict) and int(config.get("version", 2)) == 1:
        return "FSDP1 (fsdp_config={'version': 1})"
    return None


def check_supported(problem: str | None) -> None:
    """Raise if `problem` (from the functions above) names an unsupported sharding.

    Raises:
        InvalidSettingError: when `problem` is not `None`.
    """
    if problem is not None:
        raise InvalidSettingError(
            f"The EMA does not support {problem}: its shadow would copy empty or flattened parameters; "
            f"train with {SUPPORTED}."
        )
