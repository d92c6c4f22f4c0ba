#!/usr/bin/env bash
# Task endpoint throughput: wrk (-t1 -c32 -d10s --latency) against /v4/<id>/task and
# /v2/credentials/<id> on loopback, rate limit off, served by bench/endpoints_bench_server (the
# real AgentEndpoints with one synthetic task). Prints requests/s and p99 latency per route.
# Target on a 2-core machine with wrk sharing the cores: >= 50,000 requests/s, p99 < 2 ms.
#
# usage: bench/endpoints_bench.sh [build-dir] [server-threads]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
threads=${2:-2}
duration=${DURATION:-10s}
server_bin=$build/bench/endpoints_bench_server
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[[ -x $server_bin ]] || { echo "$server_bin not built (ninja -C $build endpoints_bench_server)" >&2; exit 1; }

out=$(mktemp)
"$server_bin" "$threads" >"$out" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^port=' "$out" && break; sleep 0.05; done
read -r port endpoint credentials < <(sed -E 's/port=([0-9]+) endpoint=([^ ]+) credentials=([^ ]+)/\1 \2 \3/' "$out")
base=http://127.0.0.1:$port

run() {
  local name=$1 path=$2
  curl -fsS -o /dev/null "$base$path" || { echo "$name: $base$path does not answer 200" >&2; exit 1; }
  local result rps p99
  result=$(wrk -t1 -c32 -d"$duration" --latency "$base$path")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$result")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$result")
  errors=$(grep -E 'Non-2xx|Socket errors' <<<"$result" || true)
  printf '%-28s %12s req/s   p99 %8s   %s\n' "$name" "$rps" "$p99" "$errors"
}

echo "ecs-node-agent task endpoint server, $threads threads, $(nproc) cores, wrk -t1 -c32 -d$duration"
run "/v4/<id>/task" "/v4/$endpoint/task"
run "/v2/credentials/<id>" "/v2/credentials/$credentials"
