# Two commands for a newcomer: `make demo` and `make test`. Both create .venv from requirements.txt first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export WANDB_SILENT ?= true

.PHONY: demo test test-slurm bench gallery clean-venv

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(PY) launch.py demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slurm"

test-slurm: $(STAMP)
	bash scripts/local_slurm.sh start
	$(PY) -m pytest -q -m slurm; status=$$?; bash scripts/local_slurm.sh stop; exit $$status

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
