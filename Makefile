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
	$(BIN)/genseq generate --prompt "It is a truth universally acknowledged" --style austen --max-new-tokens 60 --temperature 0.7 --top-p 0.9 --seed 0
	$(BIN)/genseq generate --prompt "To be or not to" --suggest 5
	$(BIN)/genseq generate --task captioning --image plugins/genseq_captioning/examples/emoji_1f600.png --num-beams 3

test: $(BIN)/genseq
	$(BIN)/pytest -q

bench: $(BIN)/genseq
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_captioning.py

clean:
	rm -rf $(VENV) build *.egg-info
