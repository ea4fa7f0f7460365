#!/usr/bin/env bash
# One prepared session on a lent GPU machine (H100/H200; torch, transformers, peft there; no vLLM, no
# network, 64 MiB carried): t2's own commands on CUDA in bf16 against fp32, then the 8B-scale benchmark.
#
#   bash tests/bench/gpu_session.sh            # on the GPU machine, from the repository root
#   DEVICE=cpu DTYPE=float32 STEPS=1 N_LIK=8 N_GEN=4 SCALE=0 bash tests/bench/gpu_session.sh   # a dry run here
#
# It needs, carried next to the checkout (both git-ignored): .gpu/smollm2-shape (SmolLM2-135M's
# config and tokenizer files only: its weights do not fit the 64 MiB carried, so the model is
# SmolLM2-shaped with random weights — speed and memory figures, not quality) and .gpu/arc (the first
# 200 lines of each ARC-Easy split); optionally .whl/ with wheels of t2's dependencies at the versions
# t2 is tested with. Everything it prints also goes to $OUT/gpu-session.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/t2-gpu-session}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
STEPS=${STEPS:-5}
LAYERS=${LAYERS:-4}
N_LIK=${N_LIK:-200}
N_GEN=${N_GEN:-64}
SCALE=${SCALE:-1}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-session.log") 2>&1

if [ -d .whl ] && [ "${WHEELS:-1}" = 1 ]; then  # WHEELS=0: use the installed packages
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 T2_HOME=/tmp/t2-home TOKENIZERS_PARALLELISM=false
MODEL=/tmp/smollm2-shaped
REG=/tmp/t2-gpu-registry
rm -rf "$MODEL" "$REG" "$T2_HOME"

python3 - "$MODEL" <<'EOF'
import sys, time, torch, transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
config = AutoConfig.from_pretrained(".gpu/smollm2-shape")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
model.save_pretrained(sys.argv[1])
AutoTokenizer.from_pretrained(".gpu/smollm2-shape").save_pretrained(sys.argv[1])
print("random SmolLM2-shaped model (bf16 checkpoint) written to", sys.argv[1])
EOF

T2=(python3 -m t2cli --threads 8 --device "$DEVICE")
# Each step is bounded, so one slow step cannot use up the lease; the rest still run.
step() { echo; echo "=== $*"; local start=$SECONDS; timeout "${STEP_TIMEOUT:-200}" "$@"; echo "--- exit $? in $((SECONDS - start)) s"; }

step "${T2[@]}" doctor --json
[ "$SCALE" = 1 ] && step python3 tests/bench/bench_scale.py --device "$DEVICE" --dtype "$DTYPE" --layers "$LAYERS"
# One training step, SVF (full, --rank 64) against LoRA r16/r64: CUDA max allocated beside memory_plan.py's figure.
[ "$SCALE" = 1 ] && step python3 tests/bench/bench_train_memory.py --model llama3-8b-layers --layers "$LAYERS" \
  --device "$DEVICE" --dtype "$DTYPE" --batch 4 --seq 512 --keep 257 --threads 8
for dtype in "$DTYPE" float32; do
  step "${T2[@]}" --dtype "$dtype" decompose "$MODEL" --json
done
step "${T2[@]}" --dtype "$DTYPE" train --task arc:cloze --data .gpu/arc --model "$MODEL" --registry "$REG" -o arc-gpu \
  --steps "$STEPS" --batch-size 16 --val-every "$STEPS" --engine hf --json
for dtype in "$DTYPE" float32; do
  # The expert was trained on the bf16 load: the fp32 load of the same checkpoint must accept it.
  step "${T2[@]}" --dtype "$dtype" eval --task arc:cloze --data .gpu/arc --split test -n "$N_LIK" --mode likelihood \
    --model "$MODEL" --registry "$REG" --base --expert arc-gpu --engine hf --json
  step "${T2[@]}" --dtype "$dtype" eval --task arc --data .gpu/arc --split test -n "$N_GEN" --mode generate --max-new-tokens 64 \
    --batch-size 64 --model "$MODEL" --registry "$REG" --base --engine hf --json
done
step "${T2[@]}" --dtype "$DTYPE" run examples/prompts.jsonl --adapt arc-gpu --model "$MODEL" --registry "$REG" \
  --max-new-tokens 64 --engine hf -o "$OUT/run-arc-gpu.jsonl" --json
echo "done"
