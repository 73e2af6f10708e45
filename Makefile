# Every target creates .venv itself; nothing is installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean venv docker-engine docker-engine-stop browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# make demo RUNTIME=process: the same story with real processes and real traffic.
demo: $(STAMP)
	$(BIN)/python -m lab.demo $(RUNTIME)

# The docker runtime's tests need an engine: docker-engine installs Debian's docker.io and
# busybox-static when missing and starts dockerd when none answers (best effort: never fails;
# its outcome is in .kemu/docker-engine.status). Once it answered, a docker test that cannot
# reach it fails instead of skipping (KEMU_REQUIRE_DOCKER=1).
docker-engine: $(STAMP)
	@bash lab/docker-engine.sh

docker-engine-stop:
	@if [ -s .kemu/dockerd.pid ]; then kill "$$(cat .kemu/dockerd.pid)" 2>/dev/null || true; fi

# The dashboard's browser test needs Debian's chromium and chromium-driver: browser-deps installs
# them when /usr/bin/chromium or /usr/bin/chromedriver is missing (best effort: never fails; its
# outcome is in .kemu/browser.status). Once they are present, the browser test fails instead of
# skipping (KEMU_REQUIRE_BROWSER=1).
browser-deps:
	@bash lab/browser-deps.sh

test: $(STAMP) docker-engine browser-deps
	KEMU_REQUIRE_DOCKER=$$(grep -qs '^ok' .kemu/docker-engine.status && echo 1 || echo 0) \
	KEMU_REQUIRE_BROWSER=$$([ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && echo 1 || echo 0) \
		$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/kemu bench apiserver

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
