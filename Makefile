# Two commands: `make compare` and `make test` (`make test-fast` for the inner loop). Each builds .venv on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch==2.13.0 is pinned first so pip takes the CPU wheel that lies on disk on
# CPU-only machines instead of resolving a multi-GB CUDA build. Override with
# `make TORCH_SPEC=torch ...` on a GPU box.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install compare test test-fast smoke clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,parquet]"
	touch $(STAMP)

install: $(STAMP)

compare: $(STAMP)
	$(VENV)/bin/acqkit compare --out runs/compare

smoke: $(STAMP)
	$(VENV)/bin/acqkit compare --preset smoke --out runs/smoke

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# No SmolLM2 and no other processes (pyproject.toml's markers): what to run while editing.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not integration" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
