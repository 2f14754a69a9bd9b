# Two commands for a newcomer: `make demo` and `make test`. Both create .venv from requirements.lock first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export WANDB_SILENT ?= true

.PHONY: fashion-mnist demo test test-fast test-online test-slurm lint bench gallery lock check-lock clean-venv

# Installs exactly the locked environment (every transitive package), then proves it.
$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	$(PY) scripts/check_lock.py requirements.lock
	touch $(STAMP)

# Fashion-MNIST (the distillation datasets' items) from Debian's dataset-fashion-mnist: installed when missing and
# running as root, else the command is printed (the readers also take torchvision's layout under data/).
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
fashion-mnist:
	@test -f $(FASHION) || { if [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "warning: could not install dataset-fashion-mnist; the distillation tests will fail"; \
	else echo "Fashion-MNIST is missing: sudo apt-get install dataset-fashion-mnist"; fi; }

demo: $(STAMP) fashion-mnist
	$(PY) launch.py demo

# two workers (pytest-xdist); tests sharing a module fixture stay on one worker (xdist_group)
test: $(STAMP) fashion-mnist
	$(PY) -m pytest -q -m "not slurm" -n 2 --dist loadgroup

# the gates: lint rules, formatting and types (all three must be clean)
lint: $(STAMP)
	$(VENV)/bin/ruff check comprobust tests launch.py benchmarks scripts
	$(VENV)/bin/ruff format --check comprobust tests launch.py benchmarks scripts
	$(VENV)/bin/mypy

test-online: $(STAMP)
	$(PY) -m pytest -q -m online

test-slurm: $(STAMP)
	bash scripts/local_slurm.sh start
	$(PY) -m pytest -q -m slurm; status=$$?; bash scripts/local_slurm.sh stop; exit $$status

# every benchmark merges its figures into benchmarks/results.json; the README's table is generated from it
bench: $(STAMP)
	for b in corruptions training evaluation data launch results sweeps slurm_submit device; do \
		$(PY) benchmarks/$$b.py || exit 1; done
	$(PY) scripts/bench_table.py

# Re-resolves requirements.txt in a throw-away venv and writes the full pin set to requirements.lock.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -r requirements.txt
	.lock-venv/bin/python -m pip check
	.lock-venv/bin/python scripts/check_lock.py --write requirements.lock
	rm -rf .lock-venv

check-lock: $(STAMP)
	$(PY) scripts/check_lock.py requirements.lock

clean-venv:
	rm -rf $(VENV)
