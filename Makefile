# make demo: set up .venv, build the tiny local models and the demo's editors, run the job on the sample benchmark.
# make test: set up .venv and run the test suite.
# make vllm: build the vLLM judge's own environment (.venv-vllm, a link into ~/.cache/editjudge/).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.editjudge-installed
CACHE ?= .cache/tiny-models

.PHONY: demo test models bench bench-server clean vllm

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

models: $(STAMP)
	$(PY) -m editjudge.tools.make_tiny_models --out $(CACHE)
	$(PY) -m editjudge.tools.make_tiny_editors --out $(CACHE)
	$(PY) -m editjudge.tools.make_demo_outputs --out $(CACHE)

# One thread per process: the tiny models are too small to gain from more, and on a busy machine
# two OpenMP threads mostly wait for each other (measured: edit stage 12 s with one, 66 s with two).
demo: models
	OMP_NUM_THREADS=1 $(PY) main.py --config configs/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

bench: models
	$(PY) bench/reward_throughput.py

bench-server: models
	OMP_NUM_THREADS=1 $(PY) bench/reward_server.py

# vLLM pins its own torch and transformers: it gets its own environment, keyed by a hash of the recipe.
vllm:
	scripts/make_vllm_env.sh .venv-vllm

clean:
	rm -rf outputs .pytest_cache
