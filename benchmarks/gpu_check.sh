#!/usr/bin/env bash
# The GPU figures issue 21 asks for, as one prepared device run (docs/PERFORMANCE.md, "On a GPU"): the throughput
# benchmark for the small (~10M) and base (~104M) models in bf16, eager and compiled, against transformers.Trainer on
# the same card, and the chunked loss's peak memory on CUDA. Needs torch, transformers, accelerate, tokenizers,
# safetensors, psutil (the device image has them); writes logs and JSON to $OUT (default benchmarks/results/gpu).
#     bash benchmarks/gpu_check.sh            # then copy $OUT's figures into docs/PERFORMANCE.md
# The lent device's image has everything sleeptrain imports but omegaconf (pure Python; needs PyYAML, which it has).
# Bring its wheel: here, once, `echo /.whl/ >> .git/info/exclude; .venv/bin/pip wheel --no-deps -w .whl
# omegaconf==2.4.0`, and name `.whl` in the device run's `carry`; this script installs it from there.
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
if ! "$PY" -c "import omegaconf" 2>/dev/null; then
    if ls .whl/omegaconf-*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/omegaconf-*.whl || exit 2
        export PYTHONPATH=$PYTHONPATH:/tmp/site
    else
        echo "gpu_check: omegaconf is not installed here; carry its wheel in .whl/ (see this script's header)" >&2
        exit 2
    fi
fi
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
