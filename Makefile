# make demo: set up .venv, build the tiny local models and the demo's editors, run the job on the sample benchmark.
# make test: set up .venv and run the test suite.
# make models: install the pinned tiny models into .cache/tiny-models (SHA-256 verified) and the demo's outputs.
# make models-rebuild: train and build the tiny models anew and re-pin them in src/tools/pinned/ (on purpose;
#   ONLY="qwen2.5-vl-judge ..." rebuilds those alone).
# make vllm: build the vLLM judge's own environment (.venv-vllm, a link into ~/.cache/editjudge/).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.editjudge-installed
CACHE ?= .cache/tiny-models

.PHONY: demo test models models-rebuild bench bench-server clean vllm

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

models: $(STAMP)
	$(PY) -m editjudge.tools.pinned --out $(CACHE)
	$(PY) -m editjudge.tools.make_demo_outputs --out $(CACHE)

# Trained weights depend on the CPU: re-pin only on purpose (after bumping a builder's version), then commit.
models-rebuild: $(STAMP)
	$(PY) -m editjudge.tools.pinned --rebuild $(if $(ONLY),--only $(ONLY))

# One thread per process: the tiny models are too small to gain from more, and on a busy machine
# two OpenMP threads mostly wait for each other (measured: edit stage 12 s with one, 66 s with two).
demo: models
	OMP_NUM_THREADS=1 $(PY) main.py --config configs/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q --durations=25

bench: models
	$(PY) bench/reward_throughput.py

bench-server: models
	OMP_NUM_THREADS=1 $(PY) bench/reward_server.py

# vLLM pins its own torch and transformers: it gets its own environment, keyed by a hash of the recipe.
vllm:
	scripts/make_vllm_env.sh .venv-vllm

clean:
	rm -rf outputs .pytest_cache
