# fedlearn course: set-up-and-go targets.
#
#   make lab      create .venv if needed, install, start JupyterLab on notebooks/ and print the
#                 URL to open (passes --allow-root when run as root; LAB_ARGS go to Jupyter)
#   make test     ruff + zh sync check + site build + unit/browser tests + every notebook +
#                 student copies
#   make zh       build the Chinese edition notebooks/zh/ from the catalogs (tools/translate.py)
#   make zh-check the sync check of the Chinese edition (catalogs, notebooks/zh/, zh/PENDING)
#   make site     the course website, offline, into build/site/ (warnings are errors)
#   make course   execute every notebook headless into build/executed/ and build/html/
#   make student  student copies (exercise bodies stubbed) into build/student/ (and the Chinese
#                 edition's into build/student/zh/)
#   make classroom  an nbgrader course (source + release versions) into build/classroom/
#   make clean    remove build outputs and caches (keeps .venv; `make distclean` removes it too)
#
# Overridable: PYTEST_ARGS (unit tests), NB_ARGS (notebook tests), NB_TIMEOUT (seconds per cell),
# UNIT_WORKERS / NB_WORKERS (pytest-xdist workers; 0 runs the tests in one process),
# NOTEBOOK_DIR (default notebooks), BUILD (default build).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Python 3.11 is what the course is tested on; fall back to python3 where 3.11 is not installed.
PYTHON_BOOT ?= $(shell if python3.11 --version >/dev/null 2>&1; then echo python3.11; else echo python3; fi)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PYTEST_ARGS ?=
NB_ARGS ?=
# pytest-xdist workers: unit tests (mostly waiting on processes) and notebooks (each notebook
# stays in one worker, its cells in order in one kernel). 0: no workers, one process.
UNIT_WORKERS ?= 4
NB_WORKERS ?= 2
NB_TIMEOUT ?= 600
LAB_ARGS ?=
# Seconds per cell when nbgrader executes a notebook (make classroom, autograding).
GRADE_TIMEOUT ?= 600

NOTEBOOK_DIR ?= notebooks
NOTEBOOKS := $(wildcard $(NOTEBOOK_DIR)/*.ipynb)
BUILD ?= build

# Headless plots everywhere (tests, notebooks run by nbval and nbconvert).
export MPLBACKEND := Agg
# OpenMP threads that spin while waiting make tiny torch ops several times slower on a busy
# 2-core machine; passive waiting costs nothing measurable when the machine is idle.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: help venv install lab test lint unit notebooks student student-check course site \
	classroom clean distclean zh zh-check

help:
	@sed -n '3,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

# The venv is created once; its python is the target so an existing venv is never recreated.
$(PY):
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# Reinstall only when pyproject.toml changes, or when fedlearn/__init__.py first appears (an
# editable install made before the package existed maps nothing).
# torch/torchvision come through the exact pins in pyproject.toml with plain pip.
$(STAMP): pyproject.toml $(wildcard fedlearn/__init__.py) | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $@

venv: $(PY)
install: $(STAMP)

lab: $(STAMP)
	$(PY) tools/lab.py $(NOTEBOOK_DIR)/ $(if $(strip $(LAB_ARGS)),-- $(LAB_ARGS))

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# tests/test_site.py opens the site that `make site` has just built (FEDLEARN_SITE_DIR).
# The unit tests run in UNIT_WORKERS pytest-xdist workers (one torch thread each, see
# tests/conftest.py), a test file per worker: most of the slow tests wait on real processes
# (Flower nodes, a browser, nbgrader, a fresh venv), so four workers keep two cores busy.
unit: $(STAMP)
	FEDLEARN_SITE_DIR=$(abspath $(BUILD))/site $(PY) -m pytest tests/ \
		-n $(UNIT_WORKERS) --dist loadfile $(PYTEST_ARGS)

# nbval runs each notebook in a kernel of this venv (--nbval-current-env), cell by cell.
# An empty notebooks/ is reported and skipped explicitly; any other failure, including pytest's
# exit code 5 when notebooks exist but nothing was collected, fails the target.
# The English notebook files are passed, not the folder: the Chinese edition in notebooks/zh/
# is never executed (its code and outputs are the English ones, which zh-check verifies).
notebooks: $(STAMP)
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "no notebooks yet: skipping the notebook tests"
else
	$(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=$(NB_TIMEOUT) \
		-n $(NB_WORKERS) --dist loadfile $(NOTEBOOKS) $(NB_ARGS)
endif

test: lint zh-check site unit notebooks student-check

# The Chinese edition: notebooks/zh/NN_x.ipynb generated from the executed English notebook and
# its catalog notebooks/zh/catalog/NN_x.yaml (never executed again). zh-check fails on a stale
# or missing translation, on a committed notebooks/zh/ notebook that differs from what `make zh`
# writes now, and on a notebook neither translated nor listed in notebooks/zh/PENDING.
zh: $(STAMP)
	$(PY) tools/translate.py build

zh-check: $(STAMP)
	$(PY) tools/translate.py check

# The website: README, notebooks (committed outputs, never re-executed), glossary, conventions,
# instructor guide and the API reference, with MathJax served by the site (fetched once from
# npm into $(BUILD)/cache/). Every Sphinx warning is an error.
site: $(STAMP)
	$(PY) tools/build_site.py --build $(BUILD)

classroom: $(STAMP)
	rm -rf $(BUILD)/classroom
	$(PY) tools/make_classroom.py $(NOTEBOOK_DIR)/ $(BUILD)/classroom/ --timeout $(GRADE_TIMEOUT)

student: $(STAMP)
	rm -rf $(BUILD)/student
	$(PY) tools/make_student.py $(NOTEBOOK_DIR)/ $(BUILD)/student/
	if [ -d $(NOTEBOOK_DIR)/zh ]; then \
		$(PY) tools/make_student.py $(NOTEBOOK_DIR)/zh/ $(BUILD)/student/zh/; fi

student-check: student
	$(PY) tools/make_student.py --check $(BUILD)/student/
	if [ -d $(BUILD)/student/zh ]; then \
		$(PY) tools/make_student.py --check $(BUILD)/student/zh/; fi

course: $(STAMP)
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "no notebooks yet: nothing to execute"
else
	mkdir -p $(BUILD)/executed $(BUILD)/html
	for nb in $(NOTEBOOKS); do \
		$(VENV)/bin/jupyter nbconvert --to notebook --execute \
			--ExecutePreprocessor.timeout=$(NB_TIMEOUT) \
			--output-dir $(BUILD)/executed "$$nb"; \
		$(VENV)/bin/jupyter nbconvert --to html \
			--output-dir $(BUILD)/html "$(BUILD)/executed/$$(basename "$$nb")"; \
	done
endif

clean:
	rm -rf $(BUILD) .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) \
		-type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
