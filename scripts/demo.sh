#!/usr/bin/env bash
# The README's main job: on a fresh machine, install what is needed, build the agent, start a
# private containerd and a local registry holding the demo image (the stand-in for ECR / Docker
# Hub), and run the embedded demo task definition (examples/demo-task.json: an awsvpc task whose
# web server writes its page to a task-scoped volume, and a sidecar that waits for it to be
# HEALTHY, fetches the page on localhost, reads the volume and asks the task metadata endpoint
# who it is) with `ecs-node-agent run`.
# Everything it started is stopped and removed at the end.
#
# usage: scripts/demo.sh [--output json]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh >/dev/null
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target ecs-node-agent -j2 >/dev/null

WORK=$(mktemp -d /tmp/ecs-demo.XXXXXX)
cleanup() {
  build/agent/cli/ecs-node-agent network teardown >/dev/null 2>&1 || true
  bash tests/harness/harness.sh down "$WORK" >/dev/null 2>&1 || true
}
trap cleanup EXIT
echo "demo: starting a private containerd and a local registry with the demo image..." >&2
bash tests/harness/harness.sh up "$WORK" >/dev/null
# shellcheck disable=SC1091
source "$WORK/harness.env"

sed -e "s|\${REGISTRY}|$ECS_TEST_REGISTRY|g" examples/demo-task.json >"$WORK/demo-task.json"

export ECS_CONTAINERD_ADDRESS=$ECS_TEST_CONTAINERD_ADDRESS
export ECS_CONTAINERD_NAMESPACE=ecs-demo
export ECS_DATADIR=$WORK/data
status=0
build/agent/cli/ecs-node-agent run "$WORK/demo-task.json" "$@" || status=$?
build/agent/cli/ecs-node-agent images rm "$ECS_TEST_REGISTRY/test/busybox:oci" >/dev/null 2>&1 || true
echo "demo: task exited with status $status" >&2
exit "$status"
