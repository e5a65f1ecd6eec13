#!/usr/bin/env bash
# `make image-check`: build the Dockerfile, run the image, and ask it for /health and a chat.
#
# No Docker engine runs on our machines and no image registry can be reached, so Debian's
# buildah builds the image (chroot isolation, vfs storage: no daemon, no overlay mounts)
# from a base image made here out of Debian's packages with debootstrap (python3 and
# python3-venv, the Dockerfile's BUILD_IMAGE and RUNTIME_IMAGE). This machine's CA bundle
# goes into that base so that pip inside the build trusts what pip here trusts. The
# container then runs with buildah run on the host's network, bound to loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILDAH=(buildah --storage-driver vfs)
BASE=localhost/hearth-debian-base:bookworm
IMAGE=localhost/hearth:check
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=build/image-check
PORT=${IMAGE_CHECK_PORT:-18080}
mkdir -p "$WORK"

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

if ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
    step "base image from debootstrap"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR"
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
    tar -C "$WORK/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$WORK/rootfs.tar" .
    base=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$base" "$WORK/rootfs.tar" /
    # pip vendors its own CA list; point it at the system bundle copied in above.
    "${BUILDAH[@]}" config --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        --env LANG=C.UTF-8 --cmd /bin/bash "$base"
    "${BUILDAH[@]}" commit --rm "$base" "$BASE"
    rm -rf "$WORK/rootfs" "$WORK/rootfs.tar"
fi

step "build the Dockerfile"
started=$(date +%s)
"${BUILDAH[@]}" build --isolation chroot --pull=never \
    --build-arg BUILD_IMAGE="$BASE" --build-arg RUNTIME_IMAGE="$BASE" -t "$IMAGE" .
echo "built in $(( $(date +%s) - started )) s"

step "run the image"
container=$("${BUILDAH[@]}" from --pull=never "$IMAGE")
cleanup() {
    [ -n "${server:-}" ] && kill -- "-$server" 2>/dev/null || true
    "${BUILDAH[@]}" rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"${BUILDAH[@]}" run --isolation chroot "$container" -- python3 -c \
    'from hearth.engine.rpc import rpc_library; rpc_library(); print("llama.cpp has RPC")'
setsid "${BUILDAH[@]}" run --isolation chroot "$container" -- \
    hearth serve --host 127.0.0.1 --port "$PORT" > "$WORK/serve.log" 2>&1 &
server=$!
for _ in $(seq 600); do
    curl -fsS "http://127.0.0.1:$PORT/health" > "$WORK/health.json" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
    sleep 0.5
done
echo "/health: $(head -c 300 "$WORK/health.json")"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["status"] == "ok"' \
    "$WORK/health.json"

step "a chat from the running container"
curl -fsS "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model": "smollm2:chat-with-bob", "max_tokens": 24, "temperature": 0,
         "messages": [{"role": "user", "content": "What is the capital of France?"}]}' \
    > "$WORK/chat.json"
python3 - "$WORK/chat.json" <<'PY'
import json, sys
reply = json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]
assert reply.strip(), "empty reply"
print(f"reply: {reply!r}")
PY
step "image check passed"
