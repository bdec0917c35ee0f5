# Two commands on a fresh machine:  `make demo` (set up + main job)  and  `make test` (set up + tests).
# Set-up pins torch==2.13.0: on this kind of machine that is the CPU build lying on disk, while an
# unpinned torch would pull several GB of CUDA packages. pyproject.toml keeps a normal range.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := .cache/demo-model
DEMO_STORE := sqlite:///.cache/demo-home.db

.PHONY: setup demo dashboard test services
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,train]"
	touch $@

# The main job: ondol's embedded model answers requests on the demo home (state in .cache/), then
# the engine runs a random-weight checkpoint end to end. `make dashboard` serves the web UI.
demo: setup
	@mkdir -p .cache && rm -f .cache/demo-home.db
	$(BIN)/ondol home show
	$(BIN)/ondol home ask --store $(DEMO_STORE) "거실 에어컨 24도로 맞춰줘"
	$(BIN)/ondol home ask --store $(DEMO_STORE) "turn on all the lights in the living room"
	$(BIN)/ondol home ask --store $(DEMO_STORE) "현관문 잠겼어?"
	$(BIN)/ondol home ask --store $(DEMO_STORE) --json "TV 소리 좀 줄여줘"
	$(BIN)/ondol home ask --store $(DEMO_STORE) "에어컨 켜줘"
	$(BIN)/python -m ondol.demo $(DEMO)
	$(BIN)/ondol generate $(DEMO) "거실 에어컨 24도로 맞춰줘" --max-tokens 24 --seed 0
	@echo "the dashboard: make dashboard (http://127.0.0.1:8080; it prints a one-time sign-in link, and keeps the key in .cache/demo-home.api-key)"

dashboard: setup
	$(BIN)/ondol home serve --store $(DEMO_STORE)

test: setup services
	$(BIN)/pytest -q tests

# The tests start their own PostgreSQL and Mosquitto (tests/services.py) from the Debian packages,
# and drive the dashboard in Debian's chromium (Korean glyphs from fonts-noto-cjk); install whichever
# is missing. apt-get update only when the install fails (stale or empty lists).
# Not root: through sudo. On a machine with systemd the packages also start system-wide servers on
# their default ports; the tests do not use those (their servers take free ports on 127.0.0.1).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
services:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
		echo "installing test dependencies:$$missing"; \
		$(APT_INSTALL) $$missing >/dev/null || \
		{ $(SUDO) apt-get update -q >/dev/null && $(APT_INSTALL) $$missing >/dev/null; }; \
	fi
