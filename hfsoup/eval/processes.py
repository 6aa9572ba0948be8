"""The processes a merge runs on, and their device: one process, or those `accelerate launch` or `torchrun` started.

Launched with several processes, every process reads the same ingredients and computes the same soups (the
weight arithmetic is deterministic), and each scoring pass is split between them: process `i` runs batches
`i, i + n, i + 2n, ...`, and after every round of `n` batches the logits are gathered so that every process
holds all of them, in the order one process would have computed them. The gathered tensors are padded to one
length and the padding is dropped again, as accelerate's `Accelerator.gather_for_metrics` drops the samples
duplicated to fill the last batch, so each decision (a greedy step, a subset's early stop) is taken on the
same numbers in every process, and the same as in one process. Only the main process writes, pushes and logs.

One process needs no launcher and does not touch `torch.distributed`: `Processes()` is the whole machinery,
and accelerate's state is created only when the environment says a launcher started several processes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Literal

import torch

from ..errors import InvalidSettingError

__all__ = ["DEVICES", "Processes"]

logger = logging.getLogger(__name__)

DEVICES = "auto, cpu, cuda, cuda:N or mps"
"""The values `--device` takes, as a user reads them."""


class Processes:
    """The processes of one merge: their number, this one's index, its device and their collectives.

    Args:
        device: where this process scores (and, with a device other than the CPU, averages).
        state: accelerate's `PartialState` when a launcher started several processes; `None` for one.

    Use [`Processes.from_environment`] rather than the constructor; `Processes()` is the one-process default.

    Example:

    ```python
    >>> processes = Processes.from_environment("auto")  # under `torchrun --nproc-per-node 2`: 2 processes
    >>> processes.count, processes.index, processes.is_main
    (2, 0, True)
    >>> processes.share(5)  # the batches this process runs: 0, 2 and 4
    range(0, 5, 2)
    ```
    """

    def __init__(self, device: torch.device | None = None, state=None):
        self.device = device or torch.device("cpu")
        self._state = state
        self.count = 1 if state is None else state.num_processes
        self.index = 0 if state is None else state.process_index
        self.is_main = self.index == 0

    @classmethod
    def from_environment(cls, device: str = "auto") -> Processes:
        """The processes of this run: several if a launcher set `WORLD_SIZE` above 1, otherwise this one.

        Args:
            device: `auto` (CUDA, then MPS, then the CPU), `cpu`, `cuda`, `cuda:N` or `mps`. Under a launcher,
                `auto` and `cuda` give each process the GPU of its local rank (or the CPU on a machine without
                one) as accelerate assigns them, and `cpu` keeps every process on the CPU (gloo).

        Raises:
            InvalidSettingError: `device` is not one of these, or names a device this machine does not have,
                or names one GPU (`cuda:N`) or MPS for several processes.
        """
        kind, index = _parse(device)
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            if (
                "ACCELERATE_USE_CPU" in os.environ
            ):  # `accelerate launch --cpu` starts one process, whatever its count
                logger.warning(
                    "One process: `accelerate launch --cpu` starts a single one, whatever --num_processes says; "
                    "for several processes on CPUs, run `torchrun --nproc-per-node N -m hfsoup ...`."
                )
            return cls(_single_device(device, kind, index))
        if kind == "mps" or index is not None:
            raise InvalidSettingError(
                f"--device {device} names one device, but a launcher started several processes: pass "
                "--device auto or cuda (each process takes the GPU of its local rank) or cpu."
            )
        if kind == "cuda":
            _single_device(device, kind, None)  # refuse cuda on a machine without it
        from accelerate import PartialState

        # accelerate sets up gloo on the CPU only when asked to: `auto` asks for it on a machine without CUDA.
        state = PartialState(cpu=kind == "cpu" or (kind == "auto" and not torch.cuda.is_available()))
        processes = cls(torch.device("cpu") if state.device.type == "cpu" else state.device, state)
        if processes.is_main:
            logger.info(
                "%d processes, launched together; this one, the main one, runs on %s (the others on theirs, %s).",
                processes.count, processes.device, "gloo" if processes.device.type == "cpu" else state.backend,
            )  # fmt: skip
        return processes

    def share(self, count: int) -> range:
        """The positions, among `count` items (batches), that this process handles: every `count`-th from its index."""
        return range(self.index, count, self.count)

    def gather(self, tensor: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
        """Every process's `tensor`, in process order: process `i` holds `sizes[i]` rows (none past `len(sizes)`).

        Each process pads its rows to `max(sizes)` (the sizes are known to all, so no size is exchanged), the
        padded tensors are gathered, and the padding is dropped. With one process, `[tensor]`.
        """
        if self._state is None:
            return [tensor]
        from accelerate.utils import gather

        width = max(sizes)
        padded = tensor.new_zeros((width, *tensor.shape[1:]))
        padded[: len(tensor)] = tensor
        every = gather(padded)
        return [every[i * width : i * width + size] for i, size in enumerate(sizes)]

    def reduce(self, tensor: torch.Tensor, reduction: Literal["sum", "mean"] = "sum") -> torch.Tensor:
        """`tensor` summed (or averaged) over the processes, e.g. the gradient of a loss over split batches.

        Each process gets the same result, a new tensor; with one process, `tensor` itself. The sum of
        several processes is not rounded as one process's sum of the same terms would be (the terms are
        added in another order), so a result computed from it may differ in its last bits from one process's.
        """
        if self._state is None:
            return tensor
        from accelerate.utils import reduce

        return reduce(tensor, reduction=reduction)

    def broadcast(self, value):
        """The main process's `value` (any picklable object), in every process; with one process, `value`."""
        if self._state is None:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def wait(self) -> None:
        """Wait until every process gets here (a no-op for one process)."""
        if self._state is not None:
            self._state.wait_for_everyone()

    def close(self) -> None:
        """Wait for every process, then tear the process group down (a no-op for one process).

        The barrier first: a process that destroys the group while another still talks to it aborts gloo.
        """
        if self._state is not None:
            self._state.wait_for_everyone()
            self._state.destroy_process_group()


def _parse(device: str) -> tuple[str, int | None]:
    match = re.fullmatch(r"(auto|cpu|mps|cuda)(?::(\d+))?", device)
    if match is None or (match[2] is not None and match[1] != "cuda"):
        raise InvalidSettingError(f"--device must be {DEVICES}, got {device!r}.")
    return match[1], None if match[2] is None else int(match[2])


def _single_device(device: str, kind: str, index: int | None) -> torch.device:
    """The device one process runs on; `auto` picks CUDA, then MPS, then the CPU."""
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidSettingError(
            f"--device {device}: this machine's torch sees no CUDA GPU; use --device cpu (or auto)."
        )
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise InvalidSettingError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0."
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InvalidSettingError(
            f"--device {device}: MPS is not available here; use --device cpu (or auto)."
        )
    return torch.device(kind, index) if index is not None else torch.device(kind)
