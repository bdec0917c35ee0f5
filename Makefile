# Two commands on a fresh machine:  `make demo` (set up + main job)  and  `make test` (set up + tests).
# Set-up pins torch==2.13.0: on this kind of machine that is the CPU build lying on disk, while an
# unpinned torch would pull several GB of CUDA packages. pyproject.toml keeps a normal range.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := .cache/demo-model

.PHONY: setup demo test
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: setup
	$(BIN)/python -m ondol.demo $(DEMO)
	$(BIN)/ondol info $(DEMO)
	$(BIN)/ondol generate $(DEMO) "거실 에어컨 24도로 맞춰줘" --max-tokens 24 --seed 0

test: setup
	$(BIN)/pytest -q tests
