#!/usr/bin/env bash
# The whole pipeline on the built-in corpus (Python's own documentation; no downloads), on the CPU:
# prepare -> mask -> pretrain (tiny model, a few minutes) -> finetune on a CoLA-format task built from
# the same corpus. Usage: scripts/demo.sh [OUT_DIR]   (default runs/demo; a rerun starts afresh)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
BIN=${VENV:-.venv}/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -rf "$OUT"
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }

step "prepare: built-in corpus -> tokenized, balanced Parquet shards (vocab trained on the corpus)"
"$BIN/sharebert" prepare --builtin --train-vocab 4000 --num-train-shards 4 --num-test-shards 1 \
  --seed 42 -o "$OUT/prepared"

step "mask: duplicated static masking -> validated HDF5 samples + manifest"
"$BIN/sharebert" mask "$OUT/prepared" -o "$OUT/samples" --dup-factor 2 --seed 42

step "pretrain: tiny ShareBERT, masked LM, DeepSpeed on the CPU (600 steps, at most about 4 minutes)"
"$BIN/sharebert" pretrain --dataset_path "$OUT/samples" --output_dir "$OUT/pretrain" --preset tiny \
  --train_batch_size 64 --train_micro_batch_size_per_gpu 64 --max_steps 600 --lr 3e-3 --total_training_time 0.07 \
  --validation_steps 200 --checkpoint_steps 200 --log_steps 10 --print_steps 100 --seed 42

step "finetune: a CoLA-format acceptability task built from the corpus (real vs corrupted sentences)"
"$BIN/python" -m sharebert.trainer.finetune.demo_task "$OUT/prepared" "$OUT/glue" --seed 1
"$BIN/sharebert" finetune --model_name_or_path "$OUT/pretrain/model" --task_name cola \
  --data_dir "$OUT/glue" --output_dir "$OUT/finetune" --learning_rate 1e-3 --seed 1

step "done: $OUT"
echo "  prepared shards  $OUT/prepared/prepare.json"
echo "  samples          $OUT/samples/manifest.json"
echo "  pretraining      $OUT/pretrain/metrics.jsonl, model in $OUT/pretrain/model"
echo "  fine-tuning      $OUT/finetune/eval_results.json"
