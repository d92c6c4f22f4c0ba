#!/usr/bin/env bash
# Installs every build and test dependency of ecs-node-agent from Debian's packages.
# Idempotent: packages already present are left alone; safe to run on every CI run.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config clang-format git ccache
  # containerd client: protoc and the API protos Debian ships; gRPC's HTTP/2 through libnghttp2
  protobuf-compiler libprotobuf-dev libnghttp2-dev
  golang-github-containerd-containerd-dev golang-github-gogo-protobuf-dev
  # libraries
  libboost1.81-dev libboost-json1.81-dev libssl-dev
  libseccomp-dev libcap-dev libspdlog-dev libfmt-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # runtime and test peers
  containerd runc docker-registry apache2-utils skopeo umoci busybox-static
  # initProcessEnabled: a static tini bind-mounted into containers as PID 1
  tini
  containernetworking-plugins iptables iproute2 procps psmisc util-linux
  python3-boto3 awscli wrk curl jq
  # the HTTP client's TLS tests make their certificates with the openssl command
  openssl
  # the stand-in control plane (tests/support/fake_control_plane): HTTP and websockets
  python3-aiohttp
  # test harness: the token server signs JWTs
  python3 python3-cryptography
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's containerd and docker-registry start services through their maintainer scripts;
  # PID 1 is not systemd here and the tests start their own private instances, so refuse that.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all dependencies present"
