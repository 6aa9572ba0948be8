"""Run under `torchrun --nproc_per_node 2`: a Trainer with EmaTrainerCallback under DDP (gloo, CPU).

Each rank writes its final EMA and its log to OUTPUT_DIR so the test can compare ranks.
"""

import logging
import os
import sys
from pathlib import Path

from safetensors.torch import save_file
from transformers import Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_callback import EVAL, TRAIN, accuracy
from tiny_models import tiny_bert

from hfsoup import EmaTrainerCallback


def main(output_dir: str) -> None:
    rank = int(os.environ["RANK"])
    handler = logging.FileHandler(Path(output_dir) / f"log-rank{rank}.txt")
    logging.getLogger("hfsoup").addHandler(handler)
    logging.getLogger("hfsoup").setLevel(logging.INFO)

    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=8,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="steps",
        save_steps=4,
        report_to="none",
        use_cpu=True,
        ddp_backend="gloo",
        ddp_find_unused_parameters=False,
        seed=0,
        disable_tqdm=True,
    )
    callback = EmaTrainerCallback(decay=0.9)
    trainer = Trainer(
        model=tiny_bert(seed=0),
        args=args,
        train_dataset=TRAIN,
        eval_dataset=EVAL,
        compute_metrics=accuracy,
        callbacks=[callback],
    )
    trainer.train()
    rank = trainer.args.process_index
    assert trainer.args.world_size == 2, trainer.args.world_size
    save_file(
        {n: t.contiguous() for n, t in callback.ema.shadow.items()},
        f"{output_dir}/ema-rank{rank}.safetensors",
    )


if __name__ == "__main__":
    main(sys.argv[1])
