#!/usr/bin/env bash
# Every benchmark's accelerator mode on this machine's GPU or TPU, against PyTorch on the same chip (PyTorch has no
# TPU backend: kdjax alone there), in bfloat16 compute (parameters float32), with model FLOPs utilisation of the
# chip's dense peak (benchmarks/common.py: PEAK_FLOPS). One JSON line per benchmark into $OUT (default
# benchmarks/device_check.jsonl) and on stdout; a benchmark that fails or overruns its time writes an "error" line
# and the others go on. About 5 minutes on an H100/H200; under 8 by the per-benchmark limits.
#
#     bash benchmarks/device_check.sh            # the accelerator JAX finds (gpu or tpu)
#     bash benchmarks/device_check.sh cpu quick  # the same script on a CPU with small sizes: checks it runs
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=${1:-auto}
QUICK=${2:-}
OUT=${OUT:-benchmarks/device_check.jsonl}
if [[ $DEVICE == auto ]]; then
  DEVICE=$(python -c "import jax; b = jax.default_backend(); print({'cuda': 'gpu', 'rocm': 'gpu'}.get(b, b))")
fi
if [[ $DEVICE == cpu && -z $QUICK ]]; then
  echo "device_check: no GPU or TPU here (JAX's backend is cpu); run 'bash $0 cpu quick' to check the script" >&2
  exit 2
fi
: > "$OUT"
COMMON=(--device="$DEVICE" --dtype=bfloat16)
if [[ -n $QUICK ]]; then  # CPU-sized: a check that every accelerator path runs, not a measurement
  SIZES=("audio_encoder.py --size=ced_tiny --batch=1 --reps=1 --frontend_batch=2"
         "dsg_kd_step.py --steps=1 --batch=2 --seq=64"
         "effaac_cost.py --rounds=1 --skip_base_teacher"
         "multi2cap_step.py --rounds=1")
  LIMIT=900
else
  SIZES=("audio_encoder.py --batch=32 --reps=10 --frontend_batch=64"
         "dsg_kd_step.py --steps=20 --batch=64 --seq=128"
         "effaac_cost.py --rounds=5 --skip_base_teacher"
         "multi2cap_step.py --rounds=6")
  LIMIT=110
fi
for spec in "${SIZES[@]}"; do
  read -r script args <<< "$spec"
  name=${script%.py}
  start=$(date +%s)
  # shellcheck disable=SC2086  # $args holds several flags
  line=$(timeout "$LIMIT" python "benchmarks/$script" $args "${COMMON[@]}" 2> "/tmp/device_check_$name.log" | tail -n 1)
  rc=$?  # pipefail: the benchmark's own status (124 when it overran)
  if [[ $rc -ne 0 || ${line:0:1} != "{" ]]; then
    why=$(tail -n 1 "/tmp/device_check_$name.log" | tr '"' "'" | cut -c1-300)
    line="{\"benchmark\": \"$name\", \"device\": \"$DEVICE\", \"error\": \"exit $rc: $why\"}"
  fi
  echo "$line" | tee -a "$OUT"
  echo "device_check: $name took $(( $(date +%s) - start )) s" >&2
done
