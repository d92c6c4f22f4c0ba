#!/usr/bin/env bash
# The integration-test harness: a private containerd and three registries holding the test images,
# all under one WORKDIR and sharing nothing with the host's own services.
#
#   harness.sh up WORKDIR                start everything and write WORKDIR/harness.env
#   harness.sh down WORKDIR              leak check, then stop everything and remove WORKDIR
#   harness.sh check-leaks WORKDIR [NS]  only the leak check, for one namespace or all of them
#
# Registries: open (anonymous), htpasswd Basic auth, and Bearer token auth backed by
# token_server.py; Basic and token share one user and password. `down` cleans up even when the
# leak check fails, and then exits non-zero so CI fails on a leak.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly PYTHON=/usr/bin/python3
readonly MARKER=.ecs-test-harness
readonly REGISTRY_USER=ecsuser
readonly TOKEN_SERVICE=ecs-test-registry
readonly TOKEN_ISSUER=ecs-test-token-server
readonly IMAGE_CACHE_ROOT=${ECS_TEST_IMAGE_CACHE:-/var/tmp/ecs-node-agent-test-images}
# How long the leak check waits for containerd's garbage collector to drop content and snapshots.
readonly GC_WAIT_SECONDS=${ECS_TEST_LEAK_GC_WAIT:-5}
# Directories the runc shim creates outside containerd's root/state (paths fixed in containerd 1.6).
readonly SHARED_RUN_DIRS=(/run/containerd /run/containerd/s /run/containerd/runc /run/containerd/fifo)
readonly SNAPSHOTTERS=(overlayfs native)

log() { printf 'harness: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

usage() {
  cat >&2 <<EOF
usage: $0 up WORKDIR
       $0 down WORKDIR
       $0 check-leaks WORKDIR [NAMESPACE]
       $0 kill-containerd WORKDIR     (SIGKILL; the shims and their containers keep running)
       $0 start-containerd WORKDIR    (again, on the same socket, root and state)
EOF
  exit 2
}

# ---------------------------------------------------------------------------------------------
# Paths inside WORKDIR
# ---------------------------------------------------------------------------------------------

set_paths() {
  W=$1
  SOCK=$W/containerd.sock
  CTD_ROOT=$W/containerd/root
  CTD_STATE=$W/containerd/state
  PIDS=$W/pids
}

# Refuses to touch a directory the harness did not create.
check_workdir_is_ours() {
  [[ $W != / && -n $W ]] || die "refusing WORKDIR '$W'"
  if [[ -d $W && ! -e $W/$MARKER ]] && [[ -n $(ls -A "$W") ]]; then
    die "$W exists, is not empty and was not created by the harness; refusing to use it"
  fi
}

# Bounded, so a dead or wedged containerd cannot stall the harness (ctr waits 10s by default).
ctr_() { ctr -a "$SOCK" --connect-timeout 3s --timeout 60s "$@"; }

# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

# start_daemon NAME LOGFILE CMD...: runs CMD in a session of its own, detached from our stdio (so
# ctest does not wait on it), and records its pid in $PIDS/NAME.
start_daemon() {
  local name=$1 logfile=$2
  shift 2
  rm -f "$PIDS/$name"
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$PIDS/$name" "$@" \
    </dev/null >>"$logfile" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $PIDS/$name ]] && return 0
    sleep 0.05
  done
  die "$name did not start (no pid file)"
}

# True if PID is alive and its command line names a path inside WORKDIR (guards against a
# recycled pid, and against a harness in WORKDIR2 when WORKDIR is a prefix of it).
pid_is_ours() {
  local pid=$1
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  cmdline_of "$pid" | grep -qF -- "$W/"
}

daemon_pid() { cat "$PIDS/$1" 2>/dev/null || true; }

daemon_alive() {
  local pid
  pid=$(daemon_pid "$1")
  pid_is_ours "$pid"
}

# Waits up to SECONDS for PID to exit.
wait_gone() {
  local pid=$1 seconds=$2 i
  for ((i = 0; i < seconds * 20; i++)); do
    [[ -e /proc/$pid ]] || return 0
    # A zombie of a process we did not parent is reaped by init; treat it as gone.
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && return 0
    sleep 0.05
  done
  return 1
}

# SIGTERM, then SIGKILL after GRACE seconds.
stop_pid() {
  local pid=$1 what=$2 grace=${3:-10}
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_gone "$pid" "$grace"; then
    log "$what (pid $pid) ignored SIGTERM for ${grace}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || log "$what (pid $pid) is still there after SIGKILL"
  fi
}

stop_daemon() {
  local name=$1 grace=${2:-10} pid
  pid=$(daemon_pid "$name")
  if pid_is_ours "$pid"; then
    stop_pid "$pid" "$name" "$grace"
  fi
  rm -f "$PIDS/$name"
}

# Prints every pid whose parent chain leads to PID (children first, then theirs).
descendants() {
  local root=$1 p stat rest
  declare -A parent_of=()
  for p in /proc/[0-9]*; do
    stat=$(cat "$p/stat" 2>/dev/null) || continue
    rest=${stat##*') '}
    read -r _ ppid _ <<<"$rest"
    parent_of[${p#/proc/}]=$ppid
  done
  local -a queue=("$root")
  while ((${#queue[@]})); do
    local cur=${queue[0]}
    queue=("${queue[@]:1}")
    for p in "${!parent_of[@]}"; do
      if [[ ${parent_of[$p]} == "$cur" ]]; then
        echo "$p"
        queue+=("$p")
      fi
    done
  done
}

# argv of PID, one element a line.
cmdline_of() { { tr '\0' '\n' <"/proc/$1/cmdline"; } 2>/dev/null || true; }

# Prints "PID NAMESPACE ID" for each runc shim that serves our containerd socket.
our_shims() {
  local p pid args
  local -a argv
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    args=$(cmdline_of "$pid")
    [[ $args == *containerd-shim* ]] || continue
    mapfile -t argv <<<"$args"
    [[ $(basename "${argv[0]}") == containerd-shim* ]] || continue
    local ns="" id="" address="" i
    for ((i = 1; i < ${#argv[@]}; i++)); do
      case ${argv[i]} in
        -namespace) ns=${argv[i + 1]:-} ;;
        -id) id=${argv[i + 1]:-} ;;
        -address) address=${argv[i + 1]:-} ;;
      esac
    done
    [[ $address == "$SOCK" ]] && echo "$pid $ns $id"
  done
  return 0
}

# Shims outlive containerd by design. Those left after containerd stopped are killed together with
# their containers; runc's state and the shim's socket (outside WORKDIR) are removed too.
kill_shims() {
  local pid ns id d
  while read -r pid ns id; do
    [[ -n $pid ]] || continue
    log "killing leftover shim pid $pid (namespace $ns, id $id) and its containers"
    # The client's stdio fifos (e.g. /run/containerd/fifo/N/ID-stdout) are open in the shim.
    local -a fifo_dirs=()
    mapfile -t fifo_dirs < <(find "/proc/$pid/fd" -maxdepth 1 -type l -printf '%l\n' 2>/dev/null |
      grep '^/run/containerd/fifo/[^/]*/' | xargs -r -n1 dirname | sort -u)
    if [[ -n $ns && -n $id ]]; then
      for d in "/run/containerd/runc/$ns" "$W/runc/$ns"; do
        [[ -d $d/$id ]] && { runc --root "$d" delete --force "$id" >/dev/null 2>&1 || true; }
      done
    fi
    for d in $(descendants "$pid"); do kill -KILL "$d" 2>/dev/null || true; done
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || true
    if [[ -n $ns && -n $id ]]; then
      local hash
      hash=$(printf '%s' "$SOCK/$ns/$id" | sha256sum | cut -d' ' -f1)
      rm -f "/run/containerd/s/$hash"
    fi
    if ((${#fifo_dirs[@]})); then rm -rf "${fifo_dirs[@]}"; fi
  done < <(our_shims)
}

# fault_proxy.py instances a test started with its port file under WORKDIR and did not stop.
kill_fault_proxies() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    cmdline_of "$pid" | grep -q 'fault_proxy\.py$' || continue
    pid_is_ours "$pid" || continue
    log "stopping leftover fault_proxy pid $pid"
    stop_pid "$pid" fault_proxy 5
  done
}

# Unmounts everything at or below WORKDIR, deepest first.
unmount_all_under() {
  local mp
  while IFS= read -r -d '' mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "could not unmount $mp"
  done < <(
    "$PYTHON" - "$W" <<'EOF'
import re, sys
prefix = sys.argv[1].rstrip("/")
points = []
with open("/proc/self/mountinfo") as f:
    for line in f:
        mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if mp == prefix or mp.startswith(prefix + "/"):
            points.append(mp)
for mp in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
    sys.stdout.write(mp + "\0")
EOF
  )
}

# ---------------------------------------------------------------------------------------------
# containerd
# ---------------------------------------------------------------------------------------------

write_containerd_config() {
  mkdir -p "$CTD_ROOT" "$CTD_STATE" "$W/runc"
  cat >"$W/containerd.toml" <<EOF
# Private containerd for one test run; every path and socket lives under $W.
version = 2
root = "$CTD_ROOT"
state = "$CTD_STATE"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$W/containerd-ttrpc.sock"

[debug]
  address = "$W/containerd-debug.sock"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$W/containerd/opt"

# Collect garbage right after every deletion so leak checks do not have to wait long.
[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 1
  schedule_delay = "0s"
EOF
}

start_containerd() {
  write_containerd_config
  start_daemon containerd "$W/containerd.log" containerd --config "$W/containerd.toml"
  local i
  for ((i = 0; i < 200; i++)); do
    if ctr_ version >/dev/null 2>&1; then return 0; fi
    daemon_alive containerd || fail_with_log "containerd exited during startup" "$W/containerd.log"
    sleep 0.05
  done
  fail_with_log "containerd did not answer on $SOCK within 10s" "$W/containerd.log"
}

# ---------------------------------------------------------------------------------------------
# Registries and the token server
# ---------------------------------------------------------------------------------------------

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

random_secret() {
  "$PYTHON" -c 'import secrets, string, sys
print("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(int(sys.argv[1]))))' \
    "${1:-24}"
}

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }

start_token_server() {
  local dir=$W/token-server
  mkdir -p "$dir"
  start_daemon token-server "$W/token-server.log" "$PYTHON" "$HERE/token_server.py" \
    --user "$REGISTRY_USER" --password-file "$W/registry-password" \
    --issuer "$TOKEN_ISSUER" --service "$TOKEN_SERVICE" \
    --cert-out "$dir/cert.pem" --port-file "$dir/port"
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -s $dir/port ]] && break
    daemon_alive token-server || fail_with_log "token server exited during startup" \
      "$W/token-server.log"
    sleep 0.05
  done
  [[ -s $dir/port ]] || fail_with_log "token server did not start" "$W/token-server.log"
  TOKEN_PORT=$(<"$dir/port")
  TOKEN_URL=http://127.0.0.1:$TOKEN_PORT/token
  [[ $(http_status "$TOKEN_URL") == 401 ]] ||
    fail_with_log "token server does not refuse anonymous requests" "$W/token-server.log"
}

write_registry_config() {
  local name=$1 port=$2
  local dir=$W/registry-$name
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $(random_secret 32)
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
EOF
  case $name in
    open) ;;
    basic)
      cat >>"$dir/config.yml" <<EOF
auth:
  htpasswd:
    realm: ecs-test-registry
    path: $W/htpasswd
EOF
      ;;
    token)
      cat >>"$dir/config.yml" <<EOF
auth:
  token:
    realm: $TOKEN_URL
    service: $TOKEN_SERVICE
    issuer: $TOKEN_ISSUER
    rootcertbundle: $W/token-server/cert.pem
EOF
      ;;
  esac
}

# start_registry NAME EXPECTED_STATUS: prints host:port. Ports are picked free just before use;
# if another process takes the port first the registry dies and we retry with a new one.
start_registry() {
  local name=$1 expected=$2
  local dir=$W/registry-$name attempt port i status
  mkdir -p "$dir/data"
  for ((attempt = 1; attempt <= 5; attempt++)); do
    port=$(free_port)
    write_registry_config "$name" "$port"
    start_daemon "registry-$name" "$dir/registry.log" /usr/bin/docker-registry serve "$dir/config.yml"
    for ((i = 0; i < 200; i++)); do
      daemon_alive "registry-$name" || break
      status=$(http_status "http://127.0.0.1:$port/v2/")
      if [[ $status == "$expected" ]]; then
        echo "127.0.0.1:$port"
        return 0
      fi
      sleep 0.05
    done
    if daemon_alive "registry-$name"; then
      fail_with_log "registry $name on port $port answered /v2/ with '$status', not $expected" \
        "$dir/registry.log"
    fi
    log "registry $name failed to start on port $port (attempt $attempt); retrying"
    tail -n 3 "$dir/registry.log" >&2 || true
  done
  fail_with_log "registry $name did not start" "$dir/registry.log"
}

# ---------------------------------------------------------------------------------------------
# Test images
# ---------------------------------------------------------------------------------------------

# Builds the images once per version of build_images.sh (and of busybox) into the cache.
ensure_image_cache() {
  local key
  key=$(cat "$HERE/build_images.sh" /bin/busybox | sha256sum | cut -c1-16)
  IMAGE_CACHE=$IMAGE_CACHE_ROOT/$key
  if [[ -e $IMAGE_CACHE/.complete ]]; then
    touch "$IMAGE_CACHE"
    return 0
  fi
  mkdir -p "$IMAGE_CACHE_ROOT"
  local fd
  exec {fd}>"$IMAGE_CACHE_ROOT/.lock"
  flock "$fd"
  if [[ ! -e $IMAGE_CACHE/.complete ]]; then
    log "building test images into $IMAGE_CACHE"
    local tmp=$IMAGE_CACHE_ROOT/.build-$$
    rm -rf "$tmp" "$IMAGE_CACHE"
    bash "$HERE/build_images.sh" "$tmp" >"$W/build-images.log" 2>&1 ||
      { rm -rf "$tmp"; fail_with_log "building the test images failed" "$W/build-images.log"; }
    touch "$tmp/.complete"
    mv "$tmp" "$IMAGE_CACHE"
    # Builds of other versions of build_images.sh unused for two days (another checkout may still
    # be using a recent one).
    find "$IMAGE_CACHE_ROOT" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -mtime +2 \
      -exec rm -rf {} +
  fi
  exec {fd}>&-
}

# skopeo in a private mount namespace with a tmpfs over /var/lib: as root it would otherwise
# create and share /var/lib/containers/cache/blob-info-cache-v1.boltdb across runs.
skopeo_() {
  local tmp=$W/skopeo
  mkdir -p "$tmp/xdg" "$tmp/tmp"
  chmod 700 "$tmp/xdg"
  REGISTRY_AUTH_FILE=$tmp/auth.json XDG_RUNTIME_DIR=$tmp/xdg \
    unshare --mount --propagation private -- \
    sh -c 'mount -t tmpfs -o size=16m ecs-test-skopeo /var/lib && exec "$@"' sh \
    skopeo --insecure-policy --tmpdir "$tmp/tmp" "$@"
}

# push_images REGISTRY [CREDS]: pushes every test image to one registry.
push_images() {
  local reg=$1 creds=${2:-} src=oci:$IMAGE_CACHE/layout
  local -a auth=(--dest-tls-verify=false)
  [[ -n $creds ]] && auth+=(--dest-creds "$creds")
  skopeo_ copy -q "${auth[@]}" --preserve-digests "$src:busybox" "docker://$reg/test/busybox:oci"
  skopeo_ copy -q "${auth[@]}" --format v2s2 "$src:busybox" "docker://$reg/test/busybox:docker"
  skopeo_ copy -q "${auth[@]}" --preserve-digests "$src:layered" "docker://$reg/test/layered:oci"
  skopeo_ copy -q "${auth[@]}" --preserve-digests --all "$src:multiarch" \
    "docker://$reg/test/multiarch:latest"
  skopeo_ copy -q "${auth[@]}" --preserve-digests "$src:big" "docker://$reg/test/big:oci"
}

push_to_all_registries() {
  local creds=$REGISTRY_USER:$REGISTRY_PASSWORD name reg
  local -A pushers=()
  for name in open basic token; do
    case $name in
      open) reg=$OPEN_REGISTRY ;;
      basic) reg=$BASIC_REGISTRY ;;
      token) reg=$TOKEN_REGISTRY ;;
    esac
    if [[ $name == open ]]; then
      push_images "$reg" >"$W/push-$name.log" 2>&1 &
    else
      push_images "$reg" "$creds" >"$W/push-$name.log" 2>&1 &
    fi
    pushers[$name]=$!
  done
  for name in "${!pushers[@]}"; do
    wait "${pushers[$name]}" || fail_with_log "pushing the test images to the $name registry failed" \
      "$W/push-$name.log" "$W/registry-$name/registry.log"
  done
}

readonly ALL_MANIFEST_TYPES="application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

# fetch_manifest REPO REF OUTFILE: prints the digest of the manifest as the open registry serves it,
# after checking it against Docker-Content-Digest. OUTFILE.type gets its Content-Type.
fetch_manifest() {
  local repo=$1 ref=$2 out=$3 headers digest served
  headers=$(curl -fsS -D - -o "$out" -H "Accept: $ALL_MANIFEST_TYPES" \
    "http://$OPEN_REGISTRY/v2/$repo/manifests/$ref") || die "cannot fetch $repo:$ref"
  headers=$(tr -d '\r' <<<"$headers")
  digest=sha256:$(sha256sum "$out" | cut -d' ' -f1)
  served=$(awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}' <<<"$headers")
  [[ $served == "$digest" ]] || die "$repo:$ref: Docker-Content-Digest $served != body $digest"
  awk -F': ' 'tolower($1)=="content-type"{print $2}' <<<"$headers" >"$out.type"
  echo "$digest"
}

expect_eq() { [[ $1 == "$2" ]] || die "$3: expected '$2', got '$1'"; }

# Checks the pushed images are what the tests rely on, and records their digests.
verify_images() {
  local m=$W/manifests
  mkdir -p "$m"
  DIGEST_BUSYBOX_OCI=$(fetch_manifest test/busybox oci "$m/busybox-oci.json")
  DIGEST_BUSYBOX_DOCKER=$(fetch_manifest test/busybox docker "$m/busybox-docker.json")
  DIGEST_LAYERED_OCI=$(fetch_manifest test/layered oci "$m/layered-oci.json")
  DIGEST_MULTIARCH=$(fetch_manifest test/multiarch latest "$m/multiarch.json")
  DIGEST_BIG_OCI=$(fetch_manifest test/big oci "$m/big-oci.json")

  # umoci leaves the optional mediaType field out of OCI manifests: check what the registry says.
  expect_eq "$(<"$m/busybox-oci.json.type")" application/vnd.oci.image.manifest.v1+json \
    "test/busybox:oci media type"
  expect_eq "$(<"$m/busybox-docker.json.type")" \
    application/vnd.docker.distribution.manifest.v2+json "test/busybox:docker media type"
  expect_eq "$(jq -r '.layers[0].mediaType' "$m/busybox-docker.json")" \
    application/vnd.docker.image.rootfs.diff.tar.gzip "test/busybox:docker layer media type"
  expect_eq "$(<"$m/multiarch.json.type")" application/vnd.oci.image.index.v1+json \
    "test/multiarch:latest media type"
  expect_eq "$(jq -r '[.manifests[].platform.architecture] | join(",")' "$m/multiarch.json")" \
    amd64,arm64 "test/multiarch:latest platforms"
  BUSYBOX_LAYER=$(jq -r '.layers[0].digest' "$m/busybox-oci.json")
  expect_eq "$(jq -r '.layers | length' "$m/layered-oci.json")" 3 "test/layered:oci layer count"
  expect_eq "$(jq -r '.layers[0].digest' "$m/layered-oci.json")" "$BUSYBOX_LAYER" \
    "test/layered:oci first layer"
  MULTIARCH_AMD64=$(jq -r '.manifests[] | select(.platform.architecture=="amd64") | .digest' \
    "$m/multiarch.json")
  MULTIARCH_ARM64=$(jq -r '.manifests[] | select(.platform.architecture=="arm64") | .digest' \
    "$m/multiarch.json")
  BIG_LAYER=$(jq -r '.layers[-1].digest' "$m/big-oci.json")
  BIG_LAYER_SIZE=$(jq -r '.layers[-1].size' "$m/big-oci.json")

  # The authenticated registries must serve the same bytes, reachable with the shared credentials.
  local reg
  for reg in "$BASIC_REGISTRY" "$TOKEN_REGISTRY"; do
    skopeo_ inspect --raw --tls-verify=false --creds "$REGISTRY_USER:$REGISTRY_PASSWORD" \
      "docker://$reg/test/multiarch:latest" >"$m/multiarch-$reg.json" ||
      die "skopeo inspect on $reg failed"
    expect_eq "sha256:$(sha256sum "$m/multiarch-$reg.json" | cut -d' ' -f1)" "$DIGEST_MULTIARCH" \
      "test/multiarch:latest digest on $reg"
  done
}

# ---------------------------------------------------------------------------------------------
# Leak check
# ---------------------------------------------------------------------------------------------

# Prints "KIND: item item ..." for each kind of resource left in namespace NS.
list_resources() {
  local ns=$1 out s
  out=$(ctr_ -n "$ns" containers ls -q) || return 1
  [[ -z $out ]] || echo "containers: ${out//$'\n'/ }"
  out=$(ctr_ -n "$ns" tasks ls -q) || return 1
  [[ -z $out ]] || echo "tasks: ${out//$'\n'/ }"
  out=$(ctr_ -n "$ns" images ls -q) || return 1
  [[ -z $out ]] || echo "images: ${out//$'\n'/ }"
  out=$(ctr_ -n "$ns" leases ls -q) || return 1
  [[ -z $out ]] || echo "leases: ${out//$'\n'/ }"
  for s in "${SNAPSHOTTERS[@]}"; do
    out=$(ctr_ -n "$ns" snapshots --snapshotter "$s" ls | tail -n +2 | awk '{print $1}') ||
      return 1
    [[ -z $out ]] || echo "snapshots($s): ${out//$'\n'/ }"
  done
  out=$(ctr_ -n "$ns" content ls -q) || return 1
  [[ -z $out ]] || echo "content: ${out//$'\n'/ }"
  out=$(ctr_ -n "$ns" content active | tail -n +2 | awk '{print $1}') || return 1
  [[ -z $out ]] || echo "ingests: ${out//$'\n'/ }"
  return 0
}

# Forces a synchronous garbage collection (deleting a lease with --sync runs one).
force_gc() {
  local ns=$1 lease
  lease=$(ctr_ -n "$ns" leases create 2>/dev/null) || return 0
  ctr_ -n "$ns" leases delete --sync "$lease" >/dev/null 2>&1 || true
}

# check_namespace NS: 0 if nothing is left in NS; prints the leak otherwise.
check_namespace() {
  local ns=$1 report deadline
  deadline=$(($(date +%s) + GC_WAIT_SECONDS))
  while :; do
    report=$(list_resources "$ns") || {
      echo "LEAK CHECK FAILED: cannot list resources of namespace '$ns' (is containerd up?)"
      return 1
    }
    [[ -z $report ]] && return 0
    # Only what the garbage collector removes may still be on its way out.
    if grep -qvE '^(snapshots\([a-z]+\)|content|ingests):' <<<"$report" ||
      (($(date +%s) >= deadline)); then
      break
    fi
    force_gc "$ns"
    sleep 0.2
  done
  echo "LEAK in containerd namespace '$ns':"
  # shellcheck disable=SC2001
  sed 's/^/    /' <<<"$report"
  return 1
}

# check_leaks [NS]: checks one namespace, or all of them.
check_leaks() {
  local only=${1:-} all ns status=0
  all=$(ctr_ namespaces ls -q) || {
    echo "LEAK CHECK FAILED: cannot list namespaces on $SOCK (is the harness up?)"
    return 1
  }
  for ns in $all; do
    [[ -z $only || $ns == "$only" ]] || continue
    check_namespace "$ns" || status=1
  done
  if ((status == 0)); then
    log "leak check passed (${only:-all namespaces})"
  fi
  return $status
}

# Kills and deletes every task and container (leaked ones included) while containerd still runs,
# so the runc shims clean up their cgroups and runc state properly.
reap_containers() {
  local ns id
  for ns in $(ctr_ namespaces ls -q 2>/dev/null); do
    for id in $(ctr_ -n "$ns" tasks ls -q 2>/dev/null); do
      ctr_ -n "$ns" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
      ctr_ -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr_ -n "$ns" containers ls -q 2>/dev/null); do
      ctr_ -n "$ns" containers delete "$id" >/dev/null 2>&1 || true
    done
  done
}

# ---------------------------------------------------------------------------------------------
# up / down
# ---------------------------------------------------------------------------------------------

fail_with_log() {
  local msg=$1 f
  shift
  LOGS_SHOWN=1
  log "ERROR: $msg"
  for f in "$@"; do
    [[ -r $f ]] || continue
    log "---- last lines of $f ----"
    tail -n 30 "$f" | cut -c1-400 >&2
  done
  exit 1
}

# Shows every log (unless a specific one was shown already) and removes what `up` started.
on_up_failure() {
  local rc=$1 f
  ((rc != 0)) || return 0
  set +e
  if [[ -z ${LOGS_SHOWN:-} ]]; then
    for f in "$W"/*.log "$W"/registry-*/registry.log; do
      [[ -s $f ]] || continue
      log "---- last lines of $f ----"
      tail -n 8 "$f" | cut -c1-400 >&2
    done
  fi
  log "up failed (exit $rc); tearing everything down"
  teardown
  exit "$rc"
}

# Namespaces that may have left runc state or cgroups outside WORKDIR.
namespaces_used() {
  {
    if daemon_alive containerd; then ctr_ namespaces ls -q 2>/dev/null || true; fi
    ls "$CTD_STATE/io.containerd.runtime.v2.task" 2>/dev/null || true
    our_shims | awk '{print $2}'
  } | sort -u
}

teardown() {
  local seen_namespaces
  seen_namespaces=$(namespaces_used)
  stop_daemon containerd 10
  kill_shims
  stop_daemon token-server 5
  local name
  for name in open basic token; do stop_daemon "registry-$name" 5; done
  kill_fault_proxies
  unmount_all_under
  cleanup_shared_dirs "$seen_namespaces"
  rm -rf "$W"
}

# Removes what the shims left outside WORKDIR: per-namespace runc roots and cgroups (only empty
# ones), and the shared /run/containerd directories if they did not exist before `up`.
cleanup_shared_dirs() {
  local ns d
  for ns in $1; do
    for d in "/run/containerd/runc/$ns" /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns"; do
      if [[ -d $d ]]; then rmdir "$d" 2>/dev/null || true; fi
    done
  done
  local -a created=()
  [[ -r $W/preexisting-run-dirs ]] || return 0
  for d in "${SHARED_RUN_DIRS[@]}"; do
    grep -qxF "$d" "$W/preexisting-run-dirs" || created=("$d" "${created[@]}")
  done
  for d in "${created[@]}"; do
    if [[ -d $d ]]; then rmdir "$d" 2>/dev/null || true; fi
  done
  return 0
}

write_env() {
  local f=$W/harness.env
  cat >"$f.tmp" <<EOF
ECS_TEST_WORKDIR=$W
ECS_TEST_HARNESS_SH=$HERE/harness.sh
ECS_TEST_FAULT_PROXY=$HERE/fault_proxy.py
ECS_TEST_CONTAINERD_ADDRESS=$SOCK
ECS_TEST_CONTAINERD_ROOT=$CTD_ROOT
ECS_TEST_CONTAINERD_STATE=$CTD_STATE
ECS_TEST_RUNC_ROOT=$W/runc
ECS_TEST_REGISTRY=$OPEN_REGISTRY
ECS_TEST_BASIC_REGISTRY=$BASIC_REGISTRY
ECS_TEST_TOKEN_REGISTRY=$TOKEN_REGISTRY
ECS_TEST_TOKEN_SERVER=$TOKEN_URL
ECS_TEST_TOKEN_SERVICE=$TOKEN_SERVICE
ECS_TEST_TOKEN_ISSUER=$TOKEN_ISSUER
ECS_TEST_TOKEN_CERT=$W/token-server/cert.pem
ECS_TEST_REGISTRY_USER=$REGISTRY_USER
ECS_TEST_REGISTRY_PASSWORD=$REGISTRY_PASSWORD
ECS_TEST_IMAGE_DIGEST_BUSYBOX_OCI=$DIGEST_BUSYBOX_OCI
ECS_TEST_IMAGE_DIGEST_BUSYBOX_DOCKER=$DIGEST_BUSYBOX_DOCKER
ECS_TEST_IMAGE_DIGEST_LAYERED_OCI=$DIGEST_LAYERED_OCI
ECS_TEST_IMAGE_DIGEST_MULTIARCH=$DIGEST_MULTIARCH
ECS_TEST_IMAGE_DIGEST_MULTIARCH_AMD64=$MULTIARCH_AMD64
ECS_TEST_IMAGE_DIGEST_MULTIARCH_ARM64=$MULTIARCH_ARM64
ECS_TEST_IMAGE_DIGEST_BIG_OCI=$DIGEST_BIG_OCI
ECS_TEST_BUSYBOX_LAYER_DIGEST=$BUSYBOX_LAYER
ECS_TEST_BIG_LAYER_DIGEST=$BIG_LAYER
ECS_TEST_BIG_LAYER_SIZE=$BIG_LAYER_SIZE
EOF
  mv "$f.tmp" "$f"
}

cmd_up() {
  local t0 t
  t0=$(now)
  if [[ -e $W/$MARKER ]]; then
    log "$W holds an earlier harness; tearing it down first"
    teardown || true
  fi
  check_workdir_is_ours
  mkdir -p "$W" "$PIDS"
  touch "$W/$MARKER"
  local d
  for d in "${SHARED_RUN_DIRS[@]}"; do [[ -d $d ]] && echo "$d"; done >"$W/preexisting-run-dirs"
  trap 'on_up_failure $?' EXIT

  REGISTRY_PASSWORD=$(random_secret 24)
  (umask 077 && printf '%s\n' "$REGISTRY_PASSWORD" >"$W/registry-password")
  htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$W/htpasswd"

  t=$(now)
  start_containerd
  log "containerd up on $SOCK ($(elapsed "$t")s)"
  t=$(now)
  start_token_server
  OPEN_REGISTRY=$(start_registry open 200)
  BASIC_REGISTRY=$(start_registry basic 401)
  TOKEN_REGISTRY=$(start_registry token 401)
  log "registries up: open $OPEN_REGISTRY, basic $BASIC_REGISTRY, token $TOKEN_REGISTRY" \
    "(token server $TOKEN_URL) ($(elapsed "$t")s)"
  t=$(now)
  ensure_image_cache
  log "test images ready in $IMAGE_CACHE ($(elapsed "$t")s)"
  t=$(now)
  push_to_all_registries
  verify_images
  log "test images pushed and verified ($(elapsed "$t")s)"
  write_env
  trap - EXIT
  log "harness up in $(elapsed "$t0")s; environment in $W/harness.env"
}

cmd_down() {
  local t0 status=0
  t0=$(now)
  if [[ ! -d $W ]]; then
    log "$W does not exist; nothing to tear down"
    return 0
  fi
  check_workdir_is_ours
  if daemon_alive containerd; then
    check_leaks || status=1
    reap_containers
  elif [[ -e $PIDS/containerd ]]; then
    echo "containerd (pid $(daemon_pid containerd)) is gone: it died during the test run"
    tail -n 10 "$W/containerd.log" 2>/dev/null | cut -c1-400 || true
    status=1
  fi
  teardown
  log "harness down in $(elapsed "$t0")s"
  if ((status != 0)); then
    log "FAILED: leaks or a dead containerd (see above); everything was cleaned up anyway"
  fi
  return $status
}

main() {
  (($# >= 2)) || usage
  local cmd=$1
  set_paths "$(realpath -m "$2")"
  ((EUID == 0)) || die "the harness needs root (containerd, mounts)"
  case $cmd in
    up) (($# == 2)) || usage && cmd_up ;;
    down) (($# == 2)) || usage && cmd_down ;;
    check-leaks)
      [[ -S $SOCK ]] || die "no harness in $W (no $SOCK)"
      check_leaks "${3:-}"
      ;;
    kill-containerd)
      local pid
      pid=$(daemon_pid containerd)
      pid_is_ours "$pid" || die "no containerd of this harness is running"
      kill -KILL "$pid"
      wait_gone "$pid" 10 || die "containerd (pid $pid) survived SIGKILL"
      rm -f "$PIDS/containerd"
      ;;
    start-containerd)
      daemon_alive containerd && die "containerd is already running"
      start_containerd
      ;;
    *) usage ;;
  esac
}

main "$@"
