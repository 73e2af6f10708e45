#!/usr/bin/env bash
# `make browser-deps`: Debian's chromium and chromium-driver for the dashboard's browser test,
# best effort.
#
# Contract: idempotent, bounded, and never fails the build (always exits 0).
# 1. If /usr/bin/chromium and /usr/bin/chromedriver both exist, nothing is installed.
# 2. Otherwise installs Debian's chromium and chromium-driver with apt-get (root only;
#    non-interactive, quiet, --no-install-recommends; `apt-get update` once if the first
#    try fails). Log: .kemu/apt.log.
# The outcome goes to .kemu/browser.status: "ok <chromium version>" or the reason it failed.
# `make test` sets KEMU_REQUIRE_BROWSER=1 when it says ok, so the browser test fails instead of
# skipping when the browser it was promised does not work.
set -u
cd "$(dirname "$0")/.."
mkdir -p .kemu
STATUS=.kemu/browser.status
CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver

say() { echo "browser-deps: $*" >&2; }
give_up() { echo "$*" > "$STATUS"; say "$* (the dashboard's browser test will be skipped)"; exit 0; }
present() { [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; }

if ! present; then
    [ "$(id -u)" = 0 ] || give_up "not root: cannot apt-get install chromium chromium-driver"
    command -v apt-get >/dev/null 2>&1 || give_up "no apt-get to install chromium chromium-driver"
    say "installing chromium chromium-driver (log .kemu/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() {
        timeout 900 apt-get install -y -qq --no-install-recommends chromium chromium-driver \
            >> .kemu/apt.log 2>&1
    }
    if ! apt_install; then
        timeout 300 apt-get update -qq >> .kemu/apt.log 2>&1
        apt_install || give_up "apt-get install chromium chromium-driver failed (see .kemu/apt.log)"
    fi
    present || give_up "$CHROMIUM or $DRIVER missing after installing chromium chromium-driver"
fi

version=$(timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --version 2>/dev/null | head -n 1)
[ -n "$version" ] || give_up "$CHROMIUM --version did not answer"
echo "ok $version" > "$STATUS"
say "ready: $version"
exit 0
