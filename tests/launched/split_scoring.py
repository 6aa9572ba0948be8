"""Run under `torchrun --nproc-per-node 2`: a Scorer split between the processes against the same Scorer alone.

Each rank writes to OUTPUT_DIR/rank{i}.json what it saw: whether the split logits and scores equal those of
one process bit for bit, how many batches it ran, and what `gather` and `reduce` returned.
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import tiny_bert, tiny_tokenizer

from hfsoup.eval import get_task, load_split
from hfsoup.eval.processes import Processes
from hfsoup.eval.scoring import Scorer
from hfsoup.merge.precision import scoring_model

MRPC = get_task("mrpc")


def main(glue_dir: str, output_dir: str) -> None:
    processes = Processes.from_environment("cpu")
    model = tiny_bert(seed=0)
    tokenizer = tiny_tokenizer(Path(output_dir) / f"tokenizer{processes.index}")
    rows = load_split(MRPC, "validation[:45]", dataset=glue_dir)  # 7 batches of 7 rows, the last of 3
    batches = []
    model.register_forward_pre_hook(
        lambda _, args, kwargs: batches.append(len(kwargs["input_ids"])), with_kwargs=True
    )

    split = Scorer(model, tokenizer, MRPC, rows, batch_size=7, processes=processes)
    alone = Scorer(model, tokenizer, MRPC, rows, batch_size=7)
    batches.clear()
    split_logits = split.logits()
    split_batches = list(batches)
    same_logits = torch.equal(split_logits, alone.logits())
    full = alone.score()
    scores = {}
    for beat in (0.0, full - 1e-3, full, 0.99):
        batches.clear()
        score, ran = split.score(beat=beat), len(batches)  # the batches this process ran for the split pass
        scores[beat] = (score, alone.score(beat=beat), ran)

    bf16 = scoring_model(model, torch.bfloat16)
    split_bf16 = Scorer(bf16, tokenizer, MRPC, rows, batch_size=7, weights=model, processes=processes)
    alone_bf16 = Scorer(bf16, tokenizer, MRPC, rows, batch_size=7, weights=model)

    from hfsoup.eval.loss import SelectionLoss

    loss_split = SelectionLoss(model, tokenizer, MRPC, rows, batch_size=16, processes=processes)
    loss_alone = SelectionLoss(model, tokenizer, MRPC, rows, batch_size=16)
    (value, grads), (value_alone, grads_alone) = loss_split(0, 0), loss_alone(0, 0)
    loss_close = abs(value - value_alone) < 1e-5 and grads.keys() == grads_alone.keys()
    loss_close = loss_close and all(torch.allclose(grads[n], grads_alone[n], atol=1e-6) for n in grads)

    index = processes.index
    gathered = processes.gather(torch.full((index + 1, 2), float(index)), [1, 2])
    result = {
        "count": processes.count,
        "is_main": processes.is_main,
        "same_logits": same_logits,
        "loss_close": loss_close,
        "split_batches": split_batches,
        "has_bound": split.has_bound,
        "scores": [[beat, *values] for beat, values in scores.items()],
        "same_bf16_logits": torch.equal(split_bf16.logits(), alone_bf16.logits()),
        "gathered": [t.tolist() for t in gathered],
        "sum": processes.reduce(torch.tensor([index + 1.0])).item(),
        "mean": processes.reduce(torch.tensor([index + 1.0]), "mean").item(),
    }
    Path(output_dir, f"rank{index}.json").write_text(json.dumps(result))
    processes.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
