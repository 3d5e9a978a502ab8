#!/usr/bin/env bash
# build-image.sh - `make image`: builds docker/Dockerfile without Docker and smoke-tests it.
#
# Docker Hub is not needed: the debian:bookworm and debian:bookworm-slim base images are made
# locally with debootstrap from the Debian mirror apt already uses (read from
# /etc/apt/sources.list*), imported with `podman import`, and the Dockerfile is built with
# Debian's buildah (vfs storage, chroot isolation: works as root without user namespaces or
# overlay mounts). The FROM lines stay debian:bookworm / debian:bookworm-slim, so
# `docker build -f docker/Dockerfile .` works unchanged where Docker Hub is reachable.
#
# bookworm-slim here is the same minbase rootfs with documentation, man pages and locales
# removed, which is what the official slim variant strips.
#
# Then: `buildah from` the image, run `peftd serve` in it (chroot isolation shares the host
# network) on a loopback port, check /health and /predict from the host, stop it.
# Output: image localhost/peftd:latest in containers-storage, and build/peftd-image.tar
# (docker-archive: `docker load -i build/peftd-image.tar`). Docker image format, so the
# HEALTHCHECK is kept (the OCI format has no health checks).
#
# Environment: IMAGE (default peftd:latest), SMOKE_PORT (default 18080). The base images are
# reused when present; REBUILD_BASE=1 makes new ones.
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-peftd:latest}
SMOKE_PORT=${SMOKE_PORT:-18080}
WORK=build/image
ST=(--storage-driver vfs)
mkdir -p "$WORK"

log() { printf '[build-image] %s\n' "$*"; }

# ==== Tools (only here, not in install-deps.sh) ====
need=()
for p in buildah podman debootstrap; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "build-image: run as root (needs apt-get install ${need[*]}, debootstrap, chroot)" >&2; exit 1; }
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ "$(id -u)" -eq 0 ] || { echo "build-image: debootstrap and buildah --isolation chroot need root" >&2; exit 1; }

# ==== Base images ====

# The first Debian archive URI apt is configured with (deb822 .sources or one-line .list).
debian_mirror() {
    local f uri=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '
            /^[[:space:]]*$/ { if (ok && u != "") { print u; exit } ok = 0; u = ""; next }
            /^URIs:/ { u = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") ok = 1 }
            END { if (ok && u != "") print u }' "$f" | head -n 1)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1 == "deb" && $3 == "bookworm" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
}

have_image() { podman "${ST[@]}" image exists "$1" 2>/dev/null; }

if [ "${REBUILD_BASE:-0}" = 1 ] || ! have_image docker.io/library/debian:bookworm || ! have_image docker.io/library/debian:bookworm-slim; then
    MIRROR=$(debian_mirror)
    [ -n "$MIRROR" ] || { echo "build-image: no bookworm mirror found in /etc/apt/sources.list*" >&2; exit 1; }
    ROOTFS=$WORK/rootfs
    rm -rf "$ROOTFS"
    log "debootstrap bookworm (minbase) from $MIRROR"
    debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 30 "$WORK/debootstrap.log"; exit 1; }
    # The image's apt uses the same mirror, in the deb822 format of the official images.
    rm -f "$ROOTFS/etc/apt/sources.list"
    cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    chroot "$ROOTFS" apt-get clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log
    log "importing debian:bookworm"
    tar -C "$ROOTFS" -cf "$WORK/bookworm.tar" .
    podman "${ST[@]}" import --quiet --change 'CMD ["bash"]' "$WORK/bookworm.tar" docker.io/library/debian:bookworm >/dev/null
    log "importing debian:bookworm-slim"
    rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/*
    tar -C "$ROOTFS" -cf "$WORK/bookworm-slim.tar" .
    podman "${ST[@]}" import --quiet --change 'CMD ["bash"]' "$WORK/bookworm-slim.tar" docker.io/library/debian:bookworm-slim >/dev/null
    rm -rf "$ROOTFS" "$WORK/bookworm.tar" "$WORK/bookworm-slim.tar"
else
    log "reusing the local debian:bookworm and debian:bookworm-slim images"
fi

# ==== Build ====
IGNORE=()
buildah bud --help 2>/dev/null | grep -q -- '--ignorefile' && IGNORE=(--ignorefile docker/Dockerfile.dockerignore)
log "buildah bud -f docker/Dockerfile -t $IMAGE"
buildah "${ST[@]}" bud --format docker --isolation chroot --pull=never "${IGNORE[@]}" -f docker/Dockerfile -t "$IMAGE" . \
    >"$WORK/bud.log" 2>&1 || { tail -n 40 "$WORK/bud.log"; exit 1; }
buildah "${ST[@]}" rmi --prune >/dev/null 2>&1 || true   # the previous build's untagged image
rm -f build/peftd-image.tar
buildah "${ST[@]}" push --quiet "$IMAGE" "docker-archive:build/peftd-image.tar:$IMAGE" >/dev/null
log "built $IMAGE ($(du -h build/peftd-image.tar | cut -f1) as build/peftd-image.tar)"

# ==== Smoke test ====
CTR=$(buildah "${ST[@]}" from --pull=never "$IMAGE")
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    buildah "${ST[@]}" rm "$CTR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "smoke test: peftd serve on 127.0.0.1:$SMOKE_PORT inside $CTR"
# setsid: the server and the buildah process that runs it form one group we can stop together.
# The image's own entrypoint and environment, with the address moved to a loopback port.
setsid buildah "${ST[@]}" run --isolation chroot -e PEFTD_HOST=127.0.0.1 -e "PEFTD_PORT=$SMOKE_PORT" "$CTR" -- \
    /usr/local/bin/peftd serve >"$WORK/smoke.log" 2>&1 &
SERVER_PID=$!

URL=http://127.0.0.1:$SMOKE_PORT
ok=0
for _ in $(seq 1 100); do
    if curl -fsS "$URL/health" >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.3
done
if [ "$ok" != 1 ]; then
    echo "build-image: the server in the image did not answer /health" >&2
    tail -n 30 "$WORK/smoke.log" >&2
    exit 1
fi
health=$(curl -fsS "$URL/health")
# The image's HEALTHCHECK command, run inside the container as Docker would.
hc=$(buildah "${ST[@]}" inspect --format '{{index .Docker.Config.Healthcheck.Test 1}}' "$IMAGE")
buildah "${ST[@]}" run --isolation chroot -e "PEFTD_PORT=$SMOKE_PORT" "$CTR" -- sh -c "$hc" ||
    { echo "build-image: the HEALTHCHECK command failed inside the container: $hc" >&2; exit 1; }
log "HEALTHCHECK ($hc) -> ok"
pred=$(curl -sS --fail-with-body -H 'Content-Type: application/json' \
    -d '{"inputs": ["a great movie", "a boring mess"]}' "$URL/predict") ||
    { echo "build-image: /predict failed: $pred" >&2; tail -n 30 "$WORK/smoke.log" >&2; exit 1; }
log "GET /health -> $health"
log "POST /predict -> $pred"
case "$pred" in *negative*|*positive*) ;; *) echo "build-image: /predict answer has no label" >&2; exit 1 ;; esac
log "smoke test passed"
