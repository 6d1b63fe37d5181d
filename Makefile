# Two entry points for a fresh clone: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/genseq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/genseq
	$(BIN)/genseq generate --prompt "It is a truth universally acknowledged" --max-new-tokens 60 --seed 0

test: $(BIN)/genseq
	$(BIN)/pytest -q

bench: $(BIN)/genseq
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) build *.egg-info
