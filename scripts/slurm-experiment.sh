#!/usr/bin/env bash
# Run an lrpkit experiment on a SLURM cluster: an array job with one shard per task, then a merge job.
#
# On the login node, from the checkout (its .venv installed with `make setup`):
#
#   scripts/slurm-experiment.sh submit CONFIG OUT SHARDS [extra sbatch options...]
#
# submits `sbatch --array=1-SHARDS` of this script: array task K runs
#
#   lrpkit experiment run CONFIG --out OUT --shard K/SHARDS
#
# into one results directory OUT on the shared file system (each finished image is its own file,
# written atomically, so the tasks never touch each other's files), and a job that waits for the
# whole array (--dependency=afterok) and runs `lrpkit experiment merge OUT`, which checks that every
# unit is there exactly once and writes OUT/results.parquet. A task that fails or is preempted can
# simply be submitted again: it only runs the units that are missing
# (`lrpkit experiment status OUT --shards SHARDS` says which shards those are).
#
# Adapt the #SBATCH lines below to your cluster (partition, account, GPU request). Environment:
#   LRPKIT_PYTHON   the Python to run (default: the checkout's .venv/bin/python)
#   TORCH_HOME      where the pretrained VGG-16 weights are cached (lrpkit weights prints the file)
#
#SBATCH --job-name=lrpkit-experiment
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=%x-%A_%a.log
set -euo pipefail

usage() {
    echo "usage: $0 submit CONFIG OUT SHARDS [sbatch options...]" >&2
    exit 2
}

# sbatch runs a copy of this script from its spool folder: the checkout is passed on in LRPKIT_REPO
repo=${LRPKIT_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
python=${LRPKIT_PYTHON:-$repo/.venv/bin/python}

action=${1:-}
case "$action" in
    submit)
        [ $# -ge 4 ] || usage
        config=$(realpath "$2")
        out=$(realpath -m "$3")
        shards=$4
        shift 4
        case "$shards" in
            '' | *[!0-9]* | 0) echo "$0: SHARDS must be a positive integer, got '$shards'" >&2; exit 2 ;;
        esac
        [ -f "$config" ] || { echo "$0: config file not found: $config" >&2; exit 2; }
        # check the config, images and weights now, on the login node, before anything is queued
        "$python" -m lrpkit.cli experiment run "$config" --out "$out" --dry-run --no-estimate >/dev/null
        array=$(sbatch --parsable --array="1-$shards" --export="ALL,LRPKIT_REPO=$repo" "$@" \
                "${BASH_SOURCE[0]}" shard "$config" "$out" "$shards")
        array=${array%%;*}
        # the merge needs no GPU and little time
        merge=$(sbatch --parsable --dependency="afterok:$array" --job-name=lrpkit-merge --gres=none \
                --cpus-per-task=2 --mem=8G --time=00:30:00 --output=lrpkit-merge-%j.log \
                --export="ALL,LRPKIT_REPO=$repo" "$@" "${BASH_SOURCE[0]}" merge "$out")
        echo "submitted array job $array ($shards shards) and merge job ${merge%%;*} -> $out"
        ;;
    shard)
        [ $# -eq 4 ] || usage
        task=${SLURM_ARRAY_TASK_ID:?shard runs inside a SLURM array task (SLURM_ARRAY_TASK_ID is unset)}
        exec "$python" -m lrpkit.cli experiment run "$2" --out "$3" --shard "$task/$4" --no-estimate
        ;;
    merge)
        [ $# -eq 2 ] || usage
        exec "$python" -m lrpkit.cli experiment merge "$2"
        ;;
    *)
        usage
        ;;
esac
