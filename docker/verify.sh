#!/usr/bin/env bash
# End-to-end check of the container: build the CPU image, start it with docker/compose.yaml (service speech-cpu),
# wait for the health check, call /health/ready and /transcribe with a generated WAV, tear everything down.
#
#   docker/verify.sh            # from anywhere; needs a running Docker engine (skips, exit 0, when there is none)
#
# Environment:
#   BASE_IMAGE       base of the image (default debian:bookworm-slim; where no registry can be reached, a Debian
#                    bookworm made here by debootstrap (root, debootstrap) and `docker import`ed as
#                    centaurus-base:bookworm, made once and reused).
#   TORCH_INDEX_URL  where torch comes from (default: PyTorch's CPU index when it answers, else PyPI's CUDA build).
#   CA_BUNDLE        CA bundle handed to pip as a build secret, for TLS-intercepting proxies
#                    (default /etc/ssl/certs/ca-certificates.crt when it exists).
#   VERIFY_SOURCE    what to build: the working tree (default), or a git revision such as HEAD (its `git archive`,
#                    so half-done edits in the tree cannot break the check).
#   VERIFY_PORT      host port for the service (default 18080).
#   VERIFY_TIMEOUT   seconds to wait for the health check (default 900: a busy CPU loads models slowly).
# The image centaurus-speech:cpu is kept (rebuilds reuse its layers); the container and network are removed.
# Not part of scripts/test: it takes minutes and a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'verify: %s\n' "$*" >&2; }

if ! docker info >/dev/null 2>&1; then
  log "SKIP: no Docker engine answers (start dockerd, or run where one runs)"
  exit 0
fi

# A client that builds with BuildKit (the Dockerfile mounts a build secret): docker with buildx, or a client older
# than 23 (BuildKit built in, DOCKER_BUILDKIT=1). Newer clients without buildx refuse BuildKit builds.
pick_docker() {
  local candidate
  for candidate in $(type -ap docker); do
    if "$candidate" buildx version >/dev/null 2>&1; then echo "$candidate"; return; fi
    local major
    major=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    if [ -n "$major" ] && [ "$major" -lt 23 ]; then echo "$candidate"; return; fi
  done
  log "no docker client here builds with BuildKit: install docker-buildx"
  exit 1
}
DOCKER=$(pick_docker)
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1

if $DOCKER compose version >/dev/null 2>&1; then
  compose=($DOCKER compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  compose=()
  log "no docker compose plugin nor docker-compose: starting the container with docker run instead"
fi

base_image=${BASE_IMAGE:-debian:bookworm-slim}
if ! $DOCKER image inspect "$base_image" >/dev/null 2>&1 && ! $DOCKER pull -q "$base_image" >/dev/null 2>&1; then
  log "cannot pull $base_image: using a local Debian bookworm instead"
  base_image=centaurus-base:bookworm
  if ! $DOCKER image inspect "$base_image" >/dev/null 2>&1; then
    rootfs=$(mktemp -d /tmp/centaurus-rootfs.XXXXXX)
    log "making $base_image by debootstrap in $rootfs (a few minutes)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
      http://deb.debian.org/debian >/tmp/centaurus-debootstrap.log
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | $DOCKER import - "$base_image" >/dev/null
    rm -rf "$rootfs"
  fi
fi

torch_index=${TORCH_INDEX_URL:-}
if [ -z "$torch_index" ]; then
  if curl -fsS -o /dev/null --max-time 10 https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null; then
    torch_index=https://download.pytorch.org/whl/cpu
  else
    torch_index=https://pypi.org/simple
    log "download.pytorch.org does not answer: torch comes from PyPI (the CUDA build, several GB)"
  fi
fi

ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
secret=()
[ -s "$ca_bundle" ] && secret=(--secret "id=ca_bundle,src=$ca_bundle")

image=centaurus-speech:cpu
log "building $image from ${VERIFY_SOURCE:-the working tree} on $base_image, torch from $torch_index"
started=$(date +%s)
build=($DOCKER build -f docker/Dockerfile -t "$image" --build-arg "BASE_IMAGE=$base_image"
  --build-arg "TORCH_INDEX_URL=$torch_index" "${secret[@]}")
if [ -n "${VERIFY_SOURCE:-}" ]; then
  # A tar on stdin is the whole context: .dockerignore does not apply, so send only what the image needs.
  git archive "$VERIFY_SOURCE" pyproject.toml README.md LICENSE app model_zoo training docker/Dockerfile \
    | "${build[@]}" -
else
  "${build[@]}" .
fi
log "built in $(( $(date +%s) - started )) s; image size $(( $($DOCKER image inspect -f '{{.Size}}' "$image") / 1000000 )) MB"

# Settings from the environment: a key proves they reach the service (401 without it, 200 with it).
port=${VERIFY_PORT:-18080}
key=verify-$RANDOM$RANDOM
export CENTAURUS_PUBLISH_PORT=$port CENTAURUS_API_KEYS=$key CENTAURUS_LOG_LEVEL=warning
project=centaurus-verify
container=""
teardown() {
  if [ ${#compose[@]} -gt 0 ]; then
    "${compose[@]}" -p "$project" -f docker/compose.yaml --profile cpu down --timeout 30 >/dev/null 2>&1 || true
  elif [ -n "$container" ]; then
    $DOCKER rm -f "$container" >/dev/null 2>&1 || true
  fi
}
trap teardown EXIT

if [ ${#compose[@]} -gt 0 ]; then
  "${compose[@]}" -p "$project" -f docker/compose.yaml up -d --no-build speech-cpu
  container=$("${compose[@]}" -p "$project" -f docker/compose.yaml ps -q speech-cpu)
else
  container=$($DOCKER run -d -p "$port:8000" -e CENTAURUS_API_KEYS -e CENTAURUS_LOG_LEVEL "$image")
fi

log "waiting for the container's health check (models load and warm up)"
deadline=$(( $(date +%s) + ${VERIFY_TIMEOUT:-900} ))
until [ "$($DOCKER inspect -f '{{.State.Health.Status}}' "$container")" = healthy ]; do
  if [ "$($DOCKER inspect -f '{{.State.Running}}' "$container")" != true ] || [ "$(date +%s)" -gt "$deadline" ]; then
    $DOCKER logs --tail 50 "$container" >&2
    log "FAIL: the container did not become healthy"
    exit 1
  fi
  sleep 5
done
log "healthy after $(( $(date +%s) - started )) s since the build started"

url=http://127.0.0.1:$port
curl -fsS "$url/health/ready" >/dev/null
log "GET /health/ready: 200"

wav=$(mktemp /tmp/centaurus-verify.XXXXXX.wav)
python3 - "$wav" <<'EOF'
import math, struct, sys, wave
rate, seconds = 16000, 2.0
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * (220 + 60 * t / rate) * t / rate)))
                           for t in range(int(rate * seconds))))
EOF
unauthorized=$(curl -s -o /dev/null -w '%{http_code}' -F "file=@$wav" "$url/transcribe")
[ "$unauthorized" = 401 ] || { log "FAIL: /transcribe without the key gave $unauthorized, not 401"; exit 1; }
body=$(curl -fsS -H "X-API-Key: $key" -F "file=@$wav" "$url/transcribe")
rm -f "$wav"
python3 -c 'import json, sys; body = json.loads(sys.argv[1]); assert "text" in body and body["duration"] == 2.0, body' \
  "$body"
log "POST /transcribe: 401 without the key, 200 with it: $body"
log "OK"
