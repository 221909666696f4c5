#!/usr/bin/env bash
# The checks a machine with a CUDA GPU runs first, written into one report:
#
#   1. the tests that use CUDA (they are skipped on a CPU);
#   2. the benchmarks with --device cuda (bench/lrp_speed.py, pf_speed.py, experiment_speed.py);
#   3. a timed full-profile experiment (16 x 16 grid, both composites, MoRF/LRF/random) on a few images.
#
# Pretrained VGG-16 weights already in the torch hub cache are used (lrpkit knows the file:
# `lrpkit weights`); without them the runs use seeded random weights and the report says so.
# The full profile reads the thesis's axolotl images from an ILSVRC-2012 validation folder when
# IMAGENET_VAL points to one (class folders or flat files with IMAGENET_VAL_LABELS), else the book's
# image set `imagenet-samples`.
#
#   scripts/gpu-check.sh [REPORT]            # default report: gpu-check-report.txt
#
# Environment: LRPKIT_PYTHON (default .venv/bin/python), GPU_CHECK_IMAGES (images of the full run,
# default 2), IMAGENET_VAL, IMAGENET_VAL_LABELS, TORCH_HOME. Exit status: 1 without CUDA (nothing is
# run), 3 if a step failed (the report says which), 0 otherwise.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${LRPKIT_PYTHON:-$repo/.venv/bin/python}
report=$(realpath -m "${1:-gpu-check-report.txt}")
images=${GPU_CHECK_IMAGES:-2}
cd "$repo" || exit 1

if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu-check: no CUDA device visible to $python (torch.cuda.is_available() is False); run it on a machine with a GPU" >&2
    exit 1
fi
case "$images" in
    '' | *[!0-9]* | 0) echo "gpu-check: GPU_CHECK_IMAGES must be a positive integer, got '$images'" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

section() {
    printf '\n==== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)" >>"$report"
}

step() {  # step NAME COMMAND...: run, append its output and wall time to the report
    local name=$1 start status
    shift
    section "$name"
    printf '$ %s\n' "$*" >>"$report"
    start=$(date +%s)
    "$@" >>"$report" 2>&1
    status=$?
    printf -- '-- %s: exit %s, %s s\n' "$name" "$status" "$(($(date +%s) - start))" >>"$report"
    [ "$status" -eq 0 ] || failed+=("$name")
}

: >"$report"
section "machine"
{
    "$python" - <<'EOF'
import platform, torch, lrpkit
from lrpkit import models
print(f"lrpkit {lrpkit.__version__}, torch {torch.__version__}, python {platform.python_version()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB")
file = models.pretrained_file("vgg16")
print(f"pretrained VGG-16: {file} {'present' if file.is_file() else 'absent: random weights'}")
EOF
    git -C "$repo" rev-parse HEAD 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv 2>/dev/null
} >>"$report" 2>&1

weights=random
if "$python" -c 'import sys; from lrpkit import models; sys.exit(0 if models.pretrained_file("vgg16").is_file() else 1)'; then
    weights=imagenet
fi

step "CUDA tests" "$python" -m pytest -q -p no:cacheprovider -k cuda tests
step "thesis-code agreement on CUDA" "$python" -m pytest -q -p no:cacheprovider tests/test_pf_thesis.py
step "bench lrp_speed" "$python" bench/lrp_speed.py --device cuda
step "bench pf_speed" "$python" bench/pf_speed.py --device cuda
step "bench experiment_speed" "$python" bench/experiment_speed.py --device cuda

# the full profile on a few images: both composites, 16 x 16, three orders
if [ -n "${IMAGENET_VAL:-}" ]; then
    labels_yaml=""
    if [ -n "${IMAGENET_VAL_LABELS:-}" ]; then
        labels_yaml=", labels: '$IMAGENET_VAL_LABELS'"
    fi
    images_yaml="{imagenet_val: '$IMAGENET_VAL', class: axolotl, count: $images$labels_yaml}"
else
    images_yaml="{set: imagenet-samples, count: $images}"
fi
for family in tutorial decreasing-gamma; do
    cat >"$work/full-$family.yaml" <<EOF
name: gpu-check-full-$family
composite: {family: $family}
images: $images_yaml
model: {arch: vgg16, weights: $weights}
device: cuda
EOF
    step "full profile, $family, $images images, $weights weights" \
        "$python" -m lrpkit.cli experiment run "$work/full-$family.yaml" --out "$work/out-$family" --quiet
    step "report $family" "$python" -m lrpkit.cli experiment report "$work/out-$family"
done

section "summary"
if [ ${#failed[@]} -eq 0 ]; then
    echo "all steps passed" >>"$report"
    echo "gpu-check: all steps passed; report: $report"
    exit 0
fi
printf 'failed: %s\n' "${failed[@]}" >>"$report"
echo "gpu-check: ${#failed[@]} step(s) failed (${failed[*]}); report: $report" >&2
exit 3
