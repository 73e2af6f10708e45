#!/usr/bin/env bash
# `make docker-engine`: a Docker engine for the docker runtime's tests, best effort.
#
# Contract: idempotent, bounded, and never fails the build (always exits 0).
# 1. If `docker info` answers, nothing else is done.
# 2. Installs Debian's docker.io and busybox-static with apt-get when missing
#    (root only; non-interactive, quiet; `apt-get update` once if the first try fails).
# 3. Starts `dockerd --bridge=none --iptables=false --ip-masq=false` in the
#    background (log .kemu/dockerd.log, pidfile .kemu/dockerd.pid) unless one is
#    already running, and waits (bounded) until `docker info` answers.
# 4. Builds the test images (`kemu image build-test-images`) when the venv has kemu.
# The outcome goes to .kemu/docker-engine.status: "ok <engine version>" or the
# reason it failed; the docker tests quote it when they skip.
set -u
cd "$(dirname "$0")/.."
mkdir -p .kemu
STATUS=.kemu/docker-engine.status
LOG=.kemu/dockerd.log
PIDFILE="$PWD/.kemu/dockerd.pid"
WAIT=${KEMU_DOCKERD_WAIT:-60}

say() { echo "docker-engine: $*" >&2; }
give_up() { echo "$*" > "$STATUS"; say "$* (the docker runtime's tests will be skipped)"; exit 0; }
answers() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

build_images() {
    if [ -x .venv/bin/kemu ]; then
        .venv/bin/kemu image build-test-images >&2 || say "building the test images failed"
    fi
}

if answers && [ -x /bin/busybox ] && installed busybox-static; then
    echo "ok $(docker version --format '{{.Server.Version}}' 2>/dev/null)" > "$STATUS"
    build_images
    exit 0
fi

missing=()
command -v dockerd >/dev/null 2>&1 || installed docker.io || missing+=(docker.io)
installed busybox-static || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        give_up "not root: cannot apt-get install ${missing[*]}"
    fi
    command -v apt-get >/dev/null 2>&1 || give_up "no apt-get to install ${missing[*]}"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() {
        timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >> .kemu/apt.log 2>&1
    }
    if ! apt_install; then
        timeout 300 apt-get update -qq >> .kemu/apt.log 2>&1
        apt_install || give_up "apt-get install ${missing[*]} failed (see .kemu/apt.log)"
    fi
fi

if ! answers; then
    command -v dockerd >/dev/null 2>&1 || give_up "dockerd not found after installing docker.io"
    running=""
    if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        running=$(cat "$PIDFILE")
    elif [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        running=$(cat /var/run/docker.pid)
    fi
    if [ -z "$running" ]; then
        [ "$(id -u)" = 0 ] || give_up "not root: cannot start dockerd"
        say "starting dockerd (log $LOG)"
        setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false --pidfile "$PIDFILE" \
            >> "$LOG" 2>&1 < /dev/null &
    else
        say "dockerd already running (pid $running); waiting for it"
    fi
    for _ in $(seq 1 $((WAIT * 2))); do
        answers && break
        sleep 0.5
    done
    answers || give_up "dockerd did not answer within ${WAIT}s: $(tail -n 3 "$LOG" 2>/dev/null | tr '\n' ' ')"
fi

version=$(docker version --format '{{.Server.Version}}' 2>/dev/null)
echo "ok $version" > "$STATUS"
say "engine ready: docker://$version"
build_images
exit 0
