#!/bin/bash
# One MRPC sweep (8 runs) spread over a SLURM job array of 4 GPU jobs, then one soup job once all of them are done.
#
#   sbatch examples/slurm-sweep.sh                # submits itself as the array, and the soup job after it
#
# Every array task runs the same recipe into the same runs folder (on a filesystem all nodes share):
# `--shard slurm` reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT and trains that task's fixed share of the
# runs (2 of the 8), each run claimed by a lock file. A task killed by the scheduler leaves its run's checkpoint
# and lock: resubmit the task, or let another take the run over once the lock is older than --stale-after.
#SBATCH --job-name=hfsoup-mrpc
#SBATCH --array=0-3
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

RECIPE=recipes/mrpc.yaml
RUNS=${RUNS:-$SCRATCH/hfsoup/runs/mrpc}   # shared by every node

if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
  # Several GPUs per run instead: --gres=gpu:4 and `torchrun --nproc-per-node 4 -m hfsoup finetune ...`.
  hfsoup finetune "$RECIPE" --output-dir "$RUNS" --shard slurm --stale-after 3600
else
  # Not in the array yet: submit the array, then a soup job that starts when every task has ended well.
  array=$(sbatch --parsable "$0")
  sbatch --dependency=afterok:"$array" --job-name=hfsoup-mrpc-soup --time=01:00:00 \
    --wrap="hfsoup finetune $RECIPE --output-dir $RUNS --soup-only"
fi
