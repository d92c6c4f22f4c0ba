#!/usr/bin/env bash
# Builds the integration-test images into an OCI layout: build_images.sh OUTDIR
#
# OUTDIR/layout is one OCI image layout holding every test image under its tag:
#   busybox    busybox-static with applet links, cmd ["sh"], /etc/ecs-test-image = "busybox"
#   layered    busybox's layer (same blob) + /layer2 (+ /layer2-doomed) + a layer adding /layer3
#              and deleting /layer2-doomed (a whiteout)
#   multiarch  an image index: linux/amd64 and linux/arm64 manifests, /platform names the arch
#   big        busybox + one ~20 MiB layer of random (incompressible) data at /big.bin
# The harness caches OUTDIR keyed by a hash of this file, so any change here rebuilds the images.
set -euo pipefail

out=${1:?usage: build_images.sh OUTDIR}
layout=$out/layout
work=$(mktemp -d "${TMPDIR:-/tmp}/ecs-test-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

readonly PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Unpacks TAG into a fresh bundle and prints the bundle's rootfs path.
unpack() {
  local tag=$1 bundle=$work/bundle-$1-$RANDOM
  umoci unpack --rootless --image "$layout:$tag" "$bundle" >/dev/null
  echo "$bundle"
}

# Adds the bundle's changes as one new layer on top of the image it was unpacked from.
repack() {
  local bundle=$1 tag=$2 comment=$3
  umoci repack --image "$layout:$tag" --history.created_by "$comment" "$bundle" >/dev/null
  rm -rf "$bundle"
}

build_busybox() {
  umoci new --image "$layout:busybox"
  local bundle
  bundle=$(unpack busybox)
  local root=$bundle/rootfs
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var/tmp}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list-full); do
    [[ $applet == bin/busybox ]] && continue
    ln -sf /bin/busybox "$root/$applet"
  done
  printf 'busybox\n' >"$root/etc/ecs-test-image"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  repack "$bundle" busybox "busybox-static"
  umoci config --image "$layout:busybox" --os linux --architecture amd64 \
    --config.env "$PATH_ENV" --config.cmd sh --history.created_by "config cmd sh"
}

build_layered() {
  local bundle
  bundle=$(unpack busybox)
  printf 'layer2\n' >"$bundle/rootfs/layer2"
  printf 'deleted by layer3\n' >"$bundle/rootfs/layer2-doomed"
  repack "$bundle" layered "add /layer2 /layer2-doomed"
  bundle=$(unpack layered)
  printf 'layer3\n' >"$bundle/rootfs/layer3"
  rm "$bundle/rootfs/layer2-doomed"
  repack "$bundle" layered "add /layer3, delete /layer2-doomed"
}

build_platform() {
  local arch=$1 bundle
  bundle=$(unpack busybox)
  printf '%s\n' "$arch" >"$bundle/rootfs/platform"
  repack "$bundle" "platform-$arch" "add /platform"
  umoci config --image "$layout:platform-$arch" --architecture "$arch" --no-history
}

build_big() {
  local bundle
  bundle=$(unpack busybox)
  head -c $((20 * 1024 * 1024)) /dev/urandom >"$bundle/rootfs/big.bin"
  repack "$bundle" big "add 20 MiB of random data"
}

# Turns the platform-* tags into one image index tagged "multiarch".
build_multiarch_index() {
  /usr/bin/python3 - "$layout" <<'EOF'
import hashlib, json, os, sys

layout = sys.argv[1]
with open(os.path.join(layout, "index.json")) as f:
    top = json.load(f)
REF = "org.opencontainers.image.ref.name"
by_tag = {m.get("annotations", {}).get(REF): m for m in top["manifests"]}
entries = []
for arch in ("amd64", "arm64"):
    m = dict(by_tag[f"platform-{arch}"])
    m.pop("annotations", None)
    m["platform"] = {"architecture": arch, "os": "linux"}
    entries.append(m)
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": entries,
}
blob = json.dumps(index, separators=(",", ":")).encode()
digest = hashlib.sha256(blob).hexdigest()
with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
    f.write(blob)
top["manifests"] = [
    m for m in top["manifests"] if not m.get("annotations", {}).get(REF, "").startswith("platform-")
]
top["manifests"].append({
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "digest": f"sha256:{digest}",
    "size": len(blob),
    "annotations": {REF: "multiarch"},
})
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump(top, f)
EOF
}

umoci init --layout "$layout"
build_busybox
build_layered
build_platform amd64
build_platform arm64
build_multiarch_index
build_big
umoci gc --layout "$layout"
