# The two commands a new user needs: `make run` and `make test`.
# On a machine without the local CPU wheel, choose the torch build yourself, e.g.
#   make run TORCH_SPEC="torch==2.13.0" PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cpu"
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: run test test-pyqt6 lint bench screenshots clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch is installed on its own first so a CPU machine never pulls a multi-GB CUDA build through a
# dependency range; the project's `torch>=2.2` is then already satisfied.
$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install --quiet -e ".[all,testing]"
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/ribseg gui --sample linear

test: $(VENV)/.installed
	@if [ -z "$$DISPLAY" ] && command -v xvfb-run >/dev/null 2>&1; then \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest $(PYTEST_ARGS); \
	else \
		$(PY) -m pytest $(PYTEST_ARGS); \
	fi
	$(VENV)/bin/ruff check src tests benchmarks scripts

# The design card's binding is PyQt5; this proves the widget also runs on PyQt6 (qtpy switches).
test-pyqt6: $(VENV)/.installed
	$(PIP) install --quiet "PyQt6>=6.5"
	QT_API=pyqt6 xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest tests/gui tests/test_manifest.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

screenshots: $(VENV)/.installed
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots.py

clean-venv:
	rm -rf $(VENV)
