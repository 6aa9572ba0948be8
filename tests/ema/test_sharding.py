"""DeepSpeed ZeRO-3 and FSDP1 are refused before the first step; DDP-like plain models and FSDP2 are not."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from test_callback import make_args, make_trainer
from tiny_models import tiny_bert

from hfsoup import EmaTrainerCallback, InvalidSettingError, ModelEma
from hfsoup.ema.sharding import model_sharding_problem, trainer_sharding_problem

SUPPORTED = r"train with one process, DDP, or FSDP2 \(`fully_shard`"


def zero3_like(model: torch.nn.Module, empty: bool = True) -> torch.nn.Module:
    """Mark every parameter as DeepSpeed ZeRO-3 does (`ds_id`, `ds_numel`), and empty it as ZeRO-3 does."""
    for index, param in enumerate(model.parameters()):
        param.ds_id, param.ds_numel = index, param.numel()
        if empty:
            param.data = torch.empty(0)
    return model


@pytest.fixture
def gloo_group():
    """A one-process gloo group on a free local port, destroyed after the test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_model_ema_refuses_zero3_parameters():
    with pytest.raises(InvalidSettingError, match=f"DeepSpeed ZeRO-3 .*'bert.*' is partitioned.*{SUPPORTED}"):
        ModelEma(zero3_like(tiny_bert(seed=0)))


@pytest.mark.filterwarnings("ignore:FSDP is switching to use `NO_SHARD`")
def test_model_ema_refuses_an_fsdp1_model(gloo_group):
    from torch.distributed.fsdp import FullyShardedDataParallel

    inner = tiny_bert(seed=0)
    wrapped = FullyShardedDataParallel(inner, device_id=torch.device("cpu"))
    for model in (wrapped, inner):  # the wrapper, and the module inside it that now holds a flat parameter
        with pytest.raises(InvalidSettingError, match=f"FSDP1.*{SUPPORTED}") as error:
            ModelEma(model)
        assert "\n" not in str(error.value)


def test_fsdp2_and_plain_models_pass():
    assert model_sharding_problem(tiny_bert(seed=0), None) is None
    args = make_args("unused")
    assert trainer_sharding_problem(args) is None
    args_fsdp2 = SimpleNamespace(deepspeed=None, fsdp=True, fsdp_config={"version": 2})
    assert trainer_sharding_problem(args_fsdp2) is None


@pytest.mark.parametrize(
    ("args", "accelerator", "expected"),
    [
        (SimpleNamespace(deepspeed={"zero_optimization": {"stage": 3}}), None, "DeepSpeed ZeRO-3"),
        (
            SimpleNamespace(deepspeed="ds.json"),
            SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3))),
            "DeepSpeed ZeRO-3",
        ),
        (SimpleNamespace(fsdp=True, fsdp_config={"version": 1}), None, "FSDP1"),
        (
            SimpleNamespace(fsdp=None),
            SimpleNamespace(state=SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=1))),
            "FSDP1",
        ),
    ],
)
def test_trainer_settings_for_zero3_or_fsdp1_are_detected(args, accelerator, expected):
    assert trainer_sharding_problem(args, accelerator).startswith(expected)


def test_real_fsdp1_training_arguments_are_detected():
    args = make_args("unused", fsdp=True, fsdp_config={"version": 1})
    assert trainer_sharding_problem(args).startswith("FSDP1")


@pytest.mark.parametrize("empty", [False, True])
def test_callback_refuses_zero3_when_training_begins(tmp_path, empty):
    callback = EmaTrainerCallback(decay=0.9)
    trainer = make_trainer(make_args(tmp_path), [callback], model=zero3_like(tiny_bert(seed=0), empty))
    with pytest.raises(InvalidSettingError, match=f"DeepSpeed ZeRO-3.*{SUPPORTED}"):
        trainer.train()
    assert callback.ema is None
