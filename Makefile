# The two commands of the README:
#   make demo   create .venv, install (torch==2.13.0 first), run the quickstart recipe
#   make test   create .venv, install, run the whole test suite (slow tests included)
# and, for CI, `make gate`: the project's own benchmark gate (bench/ci-gate/)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test gate gate-baseline lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,serve,openvino]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/minilm run recipes/quickstart.yaml

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# The project's own CI gate: a tiny real pipeline benchmarked against bench/ci-gate/baseline.json.
GATE_RECIPE := bench/ci-gate/recipe.yaml
gate: $(STAMP)
	rm -rf runs/ci-gate
	$(VENV)/bin/minilm run $(GATE_RECIPE)

gate-baseline: $(STAMP)
	rm -rf runs/ci-gate
	$(VENV)/bin/minilm run $(GATE_RECIPE) --set bench.gates.baseline=null \
	    --set bench.gates.max_speedup_loss_pct=null --set bench.gates.max_accuracy_loss=null
	cp runs/ci-gate/bench/results.json bench/ci-gate/baseline-$$($(PY) -c 'from minilm_deploy.hardware import cpu_class; print(cpu_class())').json

lint: $(STAMP)
	$(VENV)/bin/ruff check minilm_deploy tests bench
	$(VENV)/bin/mypy --show-traceback minilm_deploy

clean:
	rm -rf $(VENV) runs
