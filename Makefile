# unmask: `make demo` trains and samples on Tiny Shakespeare; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
# CPU build from local disk here; CUDA users: make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO_OUT ?= out/demo

.PHONY: demo test test-slow test-gpu mutation reproduce install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/unmask prepare tinyshakespeare --out data/tinyshakespeare
	$(BIN)/unmask train cpu-demo --data data/tinyshakespeare --out $(DEMO_OUT)
	$(BIN)/unmask sample $(DEMO_OUT) --num-samples 3 --compare
	@echo
	@echo "Sample again:  $(BIN)/unmask sample $(DEMO_OUT) --seed 1 --prompt 'ROMEO:'"
	@echo "Evaluate:      $(BIN)/unmask eval $(DEMO_OUT) --json"

test: install-dev
	$(BIN)/python -m pytest -q

# Every headline figure of README / BENCHMARKS.md over 3 seeds in float32 and the precision this
# machine picks (hours on 2 CPU cores; piecewise: benchmarks/reproduce.py --only attribution).
reproduce: install-dev
	$(BIN)/python benchmarks/reproduce.py

test-slow: install-dev
	$(BIN)/python -m pytest -q -m slow

test-gpu: install-dev
	$(BIN)/python -m pytest -q -m gpu

# mutmut forks a worker per mutant after running the tests once: with more than one OpenMP
# thread the forked workers deadlock in torch's thread pool, hence OMP_NUM_THREADS=1.
mutation: install-dev  # mutation score of the math (an hour+ on 2 cores; not in CI); writes mutants/
	$(BIN)/pip install -q "mutmut>=3.8"
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run; $(BIN)/python benchmarks/mutation_report.py

clean:  # runs and generated data only (git-ignored files under data/); sources stay
	rm -rf out .pytest_cache
	git clean -fdXq data/
