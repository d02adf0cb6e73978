#!/usr/bin/env bash
# Full comparison on one task: finetune -> sparsify -> direct distill (90S) -> MaxiDisc
# over a grid of TA paths -> MiniDisc, then the report table and figures.
#
# Usage: benchmarks/reproduce.sh TASK_DIR [OUTPUT_DIR=outputs/reproduce_<task>] [flags...]
#   TASK_DIR  a task folder in its original format, e.g. ../shared/data/mrpc
#   flags...  passed to every run.py call (e.g. --use_cpu, --num_train_epochs 3)
# STEPS (env) picks steps, default "finetune sparsify distill maxidisc minidisc report";
# TA_GRID (env) the MaxiDisc teacher assistants, default "50 70 80"; TARGET default 90;
# MODEL (env) the model to finetune, default the shipped MiniLM.
set -euo pipefail
cd "$(dirname "$0")/.."
task_dir=${1:?usage: $0 TASK_DIR [OUTPUT_DIR] [flags...]}
shift
task=$(basename "$task_dir")
out=outputs/reproduce_$task
if [[ $# -gt 0 && "$1" != -* ]]; then out=$1; shift; fi
steps=${STEPS:-finetune sparsify distill maxidisc minidisc report}
grid=${TA_GRID:-50 70 80}
target=${TARGET:-90}
export DATA_DIR=$(dirname "$task_dir") OUTPUT_DIR=$out
mkdir -p "$out"
# the run folders, named by run.py's own rule (RunConfig.run_name)
ft=$(python -m minidisc.run_dir --mode finetune --task_name "$task" --output_dir "$out")
sp=$(python -m minidisc.run_dir --mode sparsify --task_name "$task" --output_dir "$out" \
  --teacher_model_path "$ft")

for step in $steps; do
  case $step in
    finetune) bash bert_scripts/run_finetuning_$task.sh "${MODEL:-}" "" "$@" ;;
    sparsify) bash bert_scripts/run_sparsification_$task.sh "$ft" "$@" ;;
    distill) bash bert_scripts/run_distillation_$task.sh "$sp" "${target}S" "" "$@" ;;
    maxidisc)
      for ta in $grid; do
        bash bert_scripts/run_maxidisc_$task.sh "$sp" "$ta,${target}S" "" "$@"
      done ;;
    minidisc) bash bert_scripts/run_minidisc_$task.sh "$sp" "$target" 0.2 "" "$@" ;;
    report) python -m minidisc.report "$out" --out "$out/report" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
