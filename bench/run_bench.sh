#!/usr/bin/env bash
# Task start-to-finish time: a one-container task with a cached image through
# `ecs-node-agent run` against `ctr run --rm` of the same image and command, same containerd,
# same run, alternating. Prints the medians and the ratio ours/ctr (target: <= 1.25; the real
# agent, going through Docker, is about 2.2x `ctr run`).
#
# usage: bench/run_bench.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
ROUNDS=${2:-15}
AGENT=$BUILD_DIR/agent/cli/ecs-node-agent
[[ -x $AGENT ]] || { echo "build first: $AGENT not found" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ecs-run-bench.XXXXXX)
cleanup() {
  # The bridge and its rules outlive a run, as the agent's do: remove what the bench made.
  if [[ ${ECS_BRIDGE_NAME:-} == ecs-runbench-br ]]; then
    "$AGENT" network teardown >/dev/null 2>&1 || true
  fi
  ctr -a "$ECS_TEST_CONTAINERD_ADDRESS" -n bench-run images rm --sync "$IMAGE" >/dev/null 2>&1 || true
  bash tests/harness/harness.sh down "$WORK" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bash tests/harness/harness.sh up "$WORK" >/dev/null
# shellcheck disable=SC1091
source "$WORK/harness.env"
IMAGE=$ECS_TEST_REGISTRY/test/busybox:oci
export ECS_CONTAINERD_ADDRESS=$ECS_TEST_CONTAINERD_ADDRESS ECS_CONTAINERD_NAMESPACE=bench-run
export ECS_LOGLEVEL=warn ECS_DATADIR=$WORK/data ECS_IMAGE_PULL_BEHAVIOR=prefer-cached
# A bridge of its own, never the host agent's ecs-br0.
export ECS_BRIDGE_NAME=ecs-runbench-br ECS_BRIDGE_SUBNET=172.31.253.0/24
# BENCH_NETWORK_MODE (host, none, awsvpc) replaces the default bridge network, to see its share.
NETWORK_MODE=${BENCH_NETWORK_MODE:+\"networkMode\": \"$BENCH_NETWORK_MODE\",}
cat >"$WORK/task.json" <<JSON
{"family": "bench", $NETWORK_MODE "containerDefinitions": [
  {"name": "app", "image": "$IMAGE", "memory": 32, "command": ["sh", "-c", ":"]}]}
JSON
"$AGENT" images pull "$IMAGE" >/dev/null

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ctr_run() { ctr -a "$ECS_CONTAINERD_ADDRESS" -n bench-run run --rm "$IMAGE" "bench-$1" sh -c : >/dev/null; }
our_run() { "$AGENT" run "$WORK/task.json" >/dev/null 2>&1; }

ctr_run warm; our_run
ctr_times=() our_times=()
for ((i = 0; i < ROUNDS; i++)); do
  t0=$(now_ms); ctr_run "$i"; t1=$(now_ms)
  t2=$(now_ms); our_run; t3=$(now_ms)
  ctr_times+=($((t1 - t0))); our_times+=($((t3 - t2)))
done
c=$(printf '%s\n' "${ctr_times[@]}" | median)
o=$(printf '%s\n' "${our_times[@]}" | median)
printf '%-40s %8s %10s %10s %7s\n' task rounds "ctr ms" "ours ms" ratio
printf '%-40s %8d %10s %10s %7s\n' "one container, cached image, sh -c :" "$ROUNDS" "$c" "$o" \
  "$(awk -v o="$o" -v c="$c" 'BEGIN {printf "%.2f", o / c}')"
echo "(ours includes reading and validating the task definition, the task cgroup, and cleanup)"
