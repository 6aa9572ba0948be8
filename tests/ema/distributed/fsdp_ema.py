"""Run under `torchrun --nproc_per_node 2`: ModelEma on an FSDP2-sharded tiny BERT (gloo, CPU).

Trains a sharded copy and an unsharded replica on the same batches, keeps an EMA of each, and writes on
each rank whether the gathered sharded EMA equals the replica's EMA, and whether a swap restored the shards.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import tiny_bert

from hfsoup import ModelEma


def main(output_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    sharded, replica = tiny_bert(seed=0).train(), tiny_bert(seed=0).train()
    for layer in sharded.bert.encoder.layer:
        fully_shard(layer)
    fully_shard(sharded)
    ema, reference = ModelEma(sharded, decay=0.8), ModelEma(replica, decay=0.8)
    initial = {n: t.clone() for n, t in reference.shadow.items()}
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (sharded, replica)]
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 6):
        ids = torch.randint(5, 60, (8, 12), generator=generator)
        labels = (ids == 7).any(1).long()
        for model, optimizer in zip((sharded, replica), optimizers, strict=True):
            torch.manual_seed(step)  # the same dropout masks in both models
            model(input_ids=ids, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        ema.update(sharded, step)
        reference.update(replica, step)

    params = dict(sharded.named_parameters())
    worst = 0.0
    for name, shard in ema.shadow.items():
        param = params[name]
        full = DTensor.from_local(
            shard, param.device_mesh, param.placements, shape=param.shape, stride=param.stride()
        )
        worst = max(worst, (full.full_tensor() - reference.shadow[name]).abs().max().item())
    local_before = {n: p.to_local().clone() for n, p in params.items()}
    with ema.swapped_into(sharded):
        swapped_in = all(torch.equal(p.to_local(), ema.shadow[n]) for n, p in params.items())
    restored = all(torch.equal(p.to_local(), local_before[n]) for n, p in params.items())
    shard_sizes = sum(t.numel() for t in ema.shadow.values())
    full_size = sum(t.numel() for t in reference.shadow.values())
    moved = max((reference.shadow[n] - initial[n]).abs().max().item() for n in initial)
    result = dict(
        sharded=ema.is_sharded,
        worst=worst,
        moved=moved,
        swapped_in=swapped_in,
        restored=restored,
        shard_fraction=shard_sizes / full_size,
    )
    Path(output_dir, f"fsdp-rank{rank}.json").write_text(json.dumps(result))
    # Both ranks finish every collective, then leave without running C++ destructors: tearing gloo down (even
    # after a barrier, with destroy_process_group) still aborted a rank now and then under load ("terminate
    # called without an active exception") after its results were written.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1])
