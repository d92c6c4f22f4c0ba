#!/usr/bin/env bash
# Image pull time: `ecs-node-agent images pull` against `ctr images pull` of the same images from
# the same local registry into the same containerd, measured in the same run, alternating.
# Each pull starts cold (the image and its content removed, GC'd) so both sides download and unpack.
# Prints per-image medians and the ratio ours/ctr (target: <= 1.2).
#
# usage: bench/pull_bench.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
ROUNDS=${2:-7}
AGENT=$BUILD_DIR/agent/cli/ecs-node-agent
[[ -x $AGENT ]] || { echo "build first: $AGENT not found" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ecs-pull-bench.XXXXXX)
cleanup() { bash tests/harness/harness.sh down "$WORK" >/dev/null 2>&1 || true; }
trap cleanup EXIT
bash tests/harness/harness.sh up "$WORK" >/dev/null
# shellcheck disable=SC1091
source "$WORK/harness.env"
SOCK=$ECS_TEST_CONTAINERD_ADDRESS
NS=bench-pull

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

ctr_pull() { ctr -a "$SOCK" -n "$NS" images pull --plain-http "$1" >/dev/null; }
ctr_rm() { ctr -a "$SOCK" -n "$NS" images rm --sync "$1" >/dev/null; }
our_pull() { ECS_CONTAINERD_ADDRESS=$SOCK ECS_CONTAINERD_NAMESPACE=$NS ECS_LOGLEVEL=warn "$AGENT" images pull "$1" >/dev/null; }
our_rm() { ECS_CONTAINERD_ADDRESS=$SOCK ECS_CONTAINERD_NAMESPACE=$NS ECS_LOGLEVEL=warn "$AGENT" images rm "$1" >/dev/null; }

printf '%-28s %8s %10s %10s %7s\n' image rounds "ctr ms" "ours ms" ratio
worst=0
for image in test/busybox:oci test/layered:oci test/big:oci; do
  ref=$ECS_TEST_REGISTRY/$image
  ctr_times=() our_times=()
  # one untimed round each to warm the registry's and the kernel's caches
  ctr_pull "$ref"; ctr_rm "$ref"; our_pull "$ref"; our_rm "$ref"
  for ((i = 0; i < ROUNDS; i++)); do
    t0=$(now_ms); ctr_pull "$ref"; t1=$(now_ms); ctr_rm "$ref"
    t2=$(now_ms); our_pull "$ref"; t3=$(now_ms); our_rm "$ref"
    ctr_times+=($((t1 - t0))); our_times+=($((t3 - t2)))
  done
  c=$(printf '%s\n' "${ctr_times[@]}" | median)
  o=$(printf '%s\n' "${our_times[@]}" | median)
  ratio=$(awk -v o="$o" -v c="$c" 'BEGIN {printf "%.2f", o / c}')
  printf '%-28s %8d %10s %10s %7s\n' "$image" "$ROUNDS" "$c" "$o" "$ratio"
  worst=$(awk -v a="$worst" -v b="$ratio" 'BEGIN {print (b > a) ? b : a}')
done
echo "worst ratio ours/ctr: $worst (target <= 1.2)"
