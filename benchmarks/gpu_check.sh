#!/usr/bin/env bash
# The GPU figures issue 21 asks for, as one prepared device run (docs/PERFORMANCE.md, "On a GPU"): the throughput
# benchmark for the small (~10M) and base (~104M) models in bf16, eager and compiled, against transformers.Trainer on
# the same card, and the chunked loss's peak memory on CUDA. Needs torch, transformers, accelerate, tokenizers,
# safetensors, psutil (the device image has them); writes logs and JSON to $OUT (default benchmarks/results/gpu).
#     bash benchmarks/gpu_check.sh            # then copy $OUT's figures into docs/PERFORMANCE.md
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/card.txt"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$OUT/card.txt"
for model in small base; do
    "$PY" -m benchmarks.train_throughput --device cuda --model "$model" --steps 120 --repeats 1 --precisions bf16 \
        --compile 2>&1 | tee "$OUT/throughput-$model.log"
done
"$PY" -m benchmarks.loss_memory --device cuda 2>&1 | tee "$OUT/loss_memory.log"
cp benchmarks/results/train_throughput_*_cuda.json benchmarks/results/loss_memory*.json "$OUT/" 2>/dev/null
ls -l "$OUT"
