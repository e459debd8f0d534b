#!/usr/bin/env bash
# The GPU figures of issues 12 and 15 in one command, for a session lent a GPU by the device
# tool (one call, under its 10-minute limit: every step has its own timeout, and a step that
# fails or times out does not stop the next). Run from the repository root:
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine (python3 has torch)
#   GPU_CHECK_QUICK=1 PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh   # CPU rehearsal
#
# 1. the machine, and whether the project's dependencies import (a missing one stops here,
#    named: bring it as a wheel, see the device tool's README);
# 2. the full `shakespeare-char` diffusion run (5,000 iterations; issue 12: under 60 s of
#    training), then its validation ELBO over the whole split with 128 t points (issue 15:
#    against nanoGPT's 1.4697 nats/char);
# 3. benchmarks/throughput.py: tokens/s and MFU of `shakespeare-char` and `gpt2-124m`,
#    diffusion beside language_model (issue 12: >= 25 % / >= 40 % MFU, diffusion >= 0.95 x);
# 4. the same preset as a language_model (issue 15: the project's own AR figure at GPU scale,
#    exact NLL over the split);
# 5. the GPU tests (pytest -m gpu).
# The timeouts add up to under 10 minutes, highest priority first.
#
# Everything it prints lands in $OUT (the device tool's folder; else out/gpu_check):
# env.txt, train.log, eval.json, throughput.txt, train_lm.log, eval_lm.json, pytest.txt and
# summary.txt (the device tool returns 8 files at most).

set -u -o pipefail
PY=${PYTHON:-python3}
RESULTS=${OUT:-out/gpu_check}
RUN=${GPU_CHECK_RUN:-out/gpu_check_run}
DATA=${GPU_CHECK_DATA:-data/tinyshakespeare}
QUICK=${GPU_CHECK_QUICK:-0}
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
summary="$RESULTS/summary.txt"
: >"$summary"

step() {  # step NAME SECONDS LOG COMMAND...: run with a timeout, record its exit status
    local name=$1 limit=$2 log=$3
    shift 3
    local start=$SECONDS
    timeout "$limit" "$@" >"$log" 2>&1
    local rc=$?
    echo "$name: exit $rc ($((SECONDS - start)) s; limit $limit s)" | tee -a "$summary"
    tail -n 15 "$log"
    return $rc
}

if [ "$QUICK" = 1 ]; then  # the plumbing only, on any machine, in about a minute
    PRESET=debug; TRAIN_EXTRA=(--train.max_iters=20 --train.eval_interval=10)
    T_POINTS=8; THROUGHPUT=(--quick --presets debug)
else
    PRESET=shakespeare-char; TRAIN_EXTRA=(); T_POINTS=128; THROUGHPUT=()
fi

step env 60 "$RESULTS/env.txt" "$PY" - <<'EOF' || { echo "fix the environment first"; exit 3; }
import importlib, platform, sys
import torch
print("python", sys.version.split()[0], platform.machine())
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)")
missing = [m for m in ("numpy", "safetensors", "tqdm", "pytest") if not importlib.util.find_spec(m)]
if missing:
    sys.exit(f"missing: {' '.join(missing)} (carry them as wheels)")
import unmask  # noqa: F401  (the repository, through PYTHONPATH)
print("unmask imports")
EOF

"$PY" -m unmask prepare tinyshakespeare --out "$DATA" >/dev/null 2>&1
rm -rf "$RUN" "$RUN-lm"
step train 150 "$RESULTS/train.log" "$PY" -m unmask train "$PRESET" --data "$DATA" \
    --out "$RUN" --train.progress=false "${TRAIN_EXTRA[@]}"
step eval 60 "$RESULTS/eval.json" "$PY" -m unmask eval "$RUN" --t-points "$T_POINTS" --judge none \
    --json
step throughput 200 "$RESULTS/throughput.txt" "$PY" benchmarks/throughput.py --data "$DATA" \
    "${THROUGHPUT[@]}"
step train-lm 100 "$RESULTS/train_lm.log" "$PY" -m unmask train "$PRESET" --data "$DATA" \
    --out "$RUN-lm" --model.mode=language_model --train.progress=false "${TRAIN_EXTRA[@]}"
step eval-lm 40 "$RESULTS/eval_lm.json" "$PY" -m unmask eval "$RUN-lm" --judge none --json
step gpu-tests 40 "$RESULTS/pytest.txt" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_cuda.py
echo "--- summary"; cat "$summary"
! grep -q ": exit [1-9]" "$summary"  # the script fails if any step did
