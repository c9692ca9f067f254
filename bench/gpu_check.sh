#!/usr/bin/env bash
# One prepared pass over everything that needs a GPU, sized for a short lease. Steps (all by default, or the
# ones named in $STEPS, in this order):
#   model_eager, model_compile     bench/model.py, Base at micro-batch 250, bf16 (eager also times the plain
#                                  implementation beside it)
#   pretrain_eager, pretrain_compile
#                                  bench/pretrain.py: the real pretraining loop against model-only
#   bf16                           `sharebert pretrain --bf16` (tiny, 600 steps) on real masked samples, then
#                                  `sharebert finetune --precision bf16` on a CoLA-format task
#   fp16                           the same with `--fp16` (DeepSpeed's loss scaling), fine-tuned in fp32
#   fp8_tests                      the GPU tests of --fp8 (tests/test_pretrain_fp8_unpad.py: FP8 within 1% of bf16)
#   model_fp8, model_fp8_rowwise, model_unpad, model_fp8_unpad
#                                  bench/model.py compiled with --fp8 (tensorwise / rowwise scaling), --unpad
#                                  (random batch with about 10% padding, as the enwiki sample) and both
#   pretrain_fp8, pretrain_unpad, pretrain_fp8_unpad
#                                  bench/pretrain.py compiled with them, on DATA_DIR/samples
#   learning                       bench/learning.py: 300 steps of $LEARNING_PRESET (default base) at batch 250,
#                                  bf16 against bf16 + --fp8 (compiled), curves in LOG_DIR/learning/
#   profile                        bench/profile_step.py: the top of the profile, compiled bf16 and compiled
#                                  --fp8 --unpad (LOG_DIR/profile_*.log, Chrome traces beside them)
# Usage: [STEPS="..."] bench/gpu_check.sh LOG_DIR DATA_DIR [WORK_DIR]
#   DATA_DIR holds samples/ (from `sharebert mask`) and glue/CoLA (from `python -m sharebert.trainer.finetune.demo_task`).
# Each command has its own time limit and log (LOG_DIR/<name>.log); a failed one does not stop the others.
set -uo pipefail
OUT=${1:?LOG_DIR}
DATA=${2:?DATA_DIR}
WORK=${3:-$OUT/work}
PY=${PYTHON:-python3}
STEPS=${STEPS:-model_eager model_compile pretrain_eager bf16 fp16 pretrain_compile}
# The FP8 / unpadded pass (docs/pretrain.md, "FP8 and unpadded"): STEPS=fp8 bench/gpu_check.sh LOG_DIR DATA_DIR
FP8_STEPS="fp8_tests model_fp8 model_unpad model_fp8_unpad pretrain_fp8_unpad learning profile model_fp8_rowwise"
FP8_STEPS="$FP8_STEPS pretrain_fp8 pretrain_unpad"
[ "$STEPS" = fp8 ] && STEPS=$FP8_STEPS
mkdir -p "$OUT" "$WORK"
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-}  # unset: empty (torch then detects the GPU)
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST/9.0a/9.0}

run() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "== $name: $*"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "   exit $? after $((SECONDS - start)) s"
  grep -v -E '^\s*$|it/s\]|s/it\]|Warning|UserWarning|return func' "$OUT/$name.log" | tail -n "${TAIL:-8}"
}

pretrain_then_finetune() {  # precision, finetune precision
  local p=$1
  run "pretrain_$p" 150 "$PY" -m sharebert.cli pretrain --dataset_path "$DATA/samples" --output_dir "$WORK/$p" \
    --preset tiny --precision "$p" --train_batch_size 64 --train_micro_batch_size_per_gpu 64 --max_steps 600 \
    --lr 3e-3 --validation_steps 200 --checkpoint_steps 200 --log_steps 50 --print_steps 100 --seed 42 --quiet
  grep -h '"val' "$WORK/$p/metrics.jsonl" | tail -n 3
  tail -n 2 "$WORK/$p/metrics.jsonl"
  run "finetune_$p" 120 "$PY" -m sharebert.cli finetune --model_name_or_path "$WORK/$p/model" --task_name cola \
    --data_dir "$DATA/glue" --output_dir "$WORK/finetune_$p" --learning_rate 1e-3 --seed 1 --precision "$2" --quiet
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch, deepspeed; print("torch", torch.__version__, "deepspeed", deepspeed.__version__)'
for s in $STEPS; do
  case $s in
    model_eager) run model_eager 150 "$PY" bench/model.py --json ;;
    model_compile) run model_compile 180 "$PY" bench/model.py --compile --no-plain --json ;;
    pretrain_eager) run pretrain_eager 200 "$PY" bench/pretrain.py --json ;;
    pretrain_compile) run pretrain_compile 180 "$PY" bench/pretrain.py --compile --json ;;
    bf16) pretrain_then_finetune bf16 bf16 ;;
    fp16) pretrain_then_finetune fp16 fp32 ;;
    fp8_tests) run fp8_tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_pretrain_fp8_unpad.py -k on_the_gpu -rs ;;
    model_fp8) run model_fp8 180 "$PY" bench/model.py --compile --fp8 --no-plain --json ;;
    model_fp8_rowwise) run model_fp8_rowwise 180 "$PY" bench/model.py --compile --fp8 rowwise --no-plain --json ;;
    model_unpad) run model_unpad 180 "$PY" bench/model.py --compile --unpad --pad-fraction 0.25 --no-plain --json ;;
    model_fp8_unpad)
      run model_fp8_unpad 180 "$PY" bench/model.py --compile --fp8 --unpad --pad-fraction 0.25 --no-plain --json ;;
    pretrain_fp8)
      run pretrain_fp8 240 "$PY" bench/pretrain.py --compile --fp8 --dataset-path "$DATA/samples" --json ;;
    pretrain_unpad)
      run pretrain_unpad 300 "$PY" bench/pretrain.py --compile --unpad --pad-fraction 0.25 \
        --dataset-path "$DATA/samples" --json ;;
    pretrain_fp8_unpad)
      run pretrain_fp8_unpad 300 "$PY" bench/pretrain.py --compile --fp8 --unpad --pad-fraction 0.25 \
        --dataset-path "$DATA/samples" --json ;;
    learning)
      TAIL=16 run learning 600 "$PY" bench/learning.py --dataset-path "$DATA/samples" --out "$OUT/learning" \
        --preset "${LEARNING_PRESET:-base}" --extra=--compile ;;
    profile)
      run profile_bf16 150 "$PY" bench/profile_step.py --compile --steps 3 --trace "$OUT/profile_bf16.json"
      TAIL=30 run profile_fp8_unpad 150 "$PY" bench/profile_step.py --compile --fp8 --unpad --pad-fraction 0.25 \
        --steps 3 --trace "$OUT/profile_fp8_unpad.json" ;;
    *) echo "unknown step $s" >&2; exit 2 ;;
  esac
done
