#!/usr/bin/env bash
# The device check on a machine with a CUDA GPU, in one go and within 8 minutes:
#
#   1. the layer tests (tests/layers) with --device cuda: fused vs naive on the GPU, every gradient;
#   2. the layer benchmark in float32, bfloat16 and float16 (autocast) against cuDNN's nn.LSTM;
#   3. a summary: gpu_check.json, with the tests' outcome and per config the fused path's
#      tokens/s over nn.LSTM's, training and inference.
#
# Run from the repository root:  bash benchmarks/gpu_check.sh [OUTPUT_DIR]
# (default: $OUT if set, else benchmarks/results/gpu_check). Every phase has its own time limit and
# the script goes on after a failed one, so what finished is always written; the exit status is
# non-zero if any phase failed. The settings below can be overridden from the environment (a test
# runs the same script on CPU with tiny settings).
set -uo pipefail

OUTPUT_DIR="${1:-${OUT:-benchmarks/results/gpu_check}}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
TESTS="${GPU_CHECK_TESTS:-tests/layers}"
DTYPES="${GPU_CHECK_DTYPES:-float32 bfloat16 float16}"
CONFIGS="${GPU_CHECK_CONFIGS:-quickstart small long ptb}"
REPEATS="${GPU_CHECK_REPEATS:-5}"
TESTS_TIMEOUT_S="${GPU_CHECK_TESTS_TIMEOUT_S:-180}"  # 3 min for the tests,
BENCH_TIMEOUT_S="${GPU_CHECK_BENCH_TIMEOUT_S:-90}"   # 1.5 min per dtype: 7.5 min in all
PYTHON="${PYTHON:-python}"

mkdir -p "$OUTPUT_DIR"
status=0

if [[ "$DEVICE" == cuda* ]] && ! "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: --device $DEVICE asked for, but torch sees no CUDA device" >&2
    exit 2
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >"$OUTPUT_DIR/versions.txt"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi >"$OUTPUT_DIR/nvidia-smi.txt" 2>&1
fi

echo "== tests on $DEVICE: $TESTS"
# in one process (-o addopts= drops the project's pytest-xdist options: one GPU, and xdist may be absent)
# shellcheck disable=SC2086  # TESTS is a list of paths
timeout "$TESTS_TIMEOUT_S" "$PYTHON" -m pytest -q -o addopts= -p no:cacheprovider $TESTS --device "$DEVICE" \
    --junitxml "$OUTPUT_DIR/tests.xml" >"$OUTPUT_DIR/tests.log" 2>&1
tests_status=$?
tail -n 3 "$OUTPUT_DIR/tests.log"
[[ $tests_status -eq 0 ]] || status=1

for dtype in $DTYPES; do
    echo "== layer benchmark on $DEVICE, $dtype"
    # shellcheck disable=SC2086  # CONFIGS is a list of names
    timeout "$BENCH_TIMEOUT_S" "$PYTHON" -m benchmarks.layers --device "$DEVICE" --dtype "$dtype" \
        --configs $CONFIGS --repeats "$REPEATS" --json "$OUTPUT_DIR/layers_${DEVICE%%:*}_$dtype.json" \
        >"$OUTPUT_DIR/layers_$dtype.log" 2>&1
    bench_status=$?
    cat "$OUTPUT_DIR/layers_$dtype.log"
    [[ $bench_status -eq 0 ]] || { echo "gpu_check: the $dtype benchmark failed (exit $bench_status)"; status=1; }
done

"$PYTHON" - "$OUTPUT_DIR" "$tests_status" "$DEVICE" $DTYPES <<'EOF'
"""Gather the tests' outcome and the fused / nn.LSTM token-rate ratios into gpu_check.json."""
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

out, tests_status, device, dtypes = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
summary = {"device": device, "tests": {"exit_status": tests_status}, "benchmarks": {}}
report = out / "tests.xml"
if report.exists():
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    summary["tests"].update(counts, passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"])
for dtype in dtypes:
    path = out / f"layers_{device.split(':')[0]}_{dtype}.json"
    if not path.exists():
        summary["benchmarks"][dtype] = None
        continue
    rows = json.loads(path.read_text())["rows"]
    summary["benchmarks"][dtype] = {
        row["config"]: {
            mode: row[f"{mode}_tokens_vs_lstm"] for mode in ("train", "infer")
        } | {"train_peak_mib": row["train_peak_mib"]}
        for row in rows
        if row["impl"] == "fused"
    }
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
EOF
[[ $? -eq 0 ]] || status=1
exit $status
