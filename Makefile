# The README's commands. Each creates .venv when missing and installs what it needs.
#   make lab     open the course in JupyterLab (pass flags with ARGS="--no-browser --port 8899")
#   make test    every test: lint, types, unit and fidelity tests, strict nbval per backend
#   make notebooks   re-execute every notebook and store its outputs (after changing one)
#   make exercises   regenerate notebooks/exercises/ from the lessons, executed on a real cluster
#   make bench   run the benchmarks; each prints ratios against a baseline from the same run
#   make test-lowest   the unit and fidelity tests once more, at the lowest declared versions
#                      (less the process-handling tests: see LOWEST_SKIP)
#   make book    the course as a static site in build/book/ (open build/book/index.html)
#   make browser the site and JupyterLab tested in headless Chromium (builds the book first)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
comma := ,
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: lab test test-lowest lint unit nbval browser book notebooks exercises bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.lab: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	@touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lab,test]'
	@touch $@ $(VENV)/.lab

$(VENV)/.book: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lab,test,book]'
	@touch $@ $(VENV)/.test $(VENV)/.lab

lab: $(VENV)/.lab
	$(BIN)/jupyter lab notebooks $(ARGS)

test: lint unit nbval browser

lint: $(VENV)/.test
	$(BIN)/ruff check src tests benchmarks book
	$(BIN)/mypy

# Two workers (xdist) keep the run short on a 2-core machine; each starts its own labs.
# tests/browser needs the built site and a browser: `make browser` runs it.
unit: $(VENV)/.test
	$(BIN)/python -m pytest tests --ignore=tests/browser -n auto -p no:cacheprovider $(ARGS)

# The floors of pyproject.toml, in a venv of their own: tests/constraints-lowest.txt pins
# them, and only wheels are taken for them (a fresh machine has no compiler).
LOWEST ?= .venv-lowest
PINNED := redis,hiredis,numpy,matplotlib,fakeredis,lupa,uvloop

$(LOWEST)/.test: pyproject.toml tests/constraints-lowest.txt
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST)/bin/python -m pip install --quiet --only-binary=$(PINNED) \
		-c tests/constraints-lowest.txt -e '.[test]'
	@touch $@

# Left out here, run by `make unit` only: the tests of our own process handling (interrupted
# starts, labs kept by a daemon, fuzzing, many clients at once). They take minutes and touch no
# library call the other tests do not make.
LOWEST_SKIP := --ignore=tests/browser --ignore=tests/test_leaks.py --ignore=tests/test_lab_daemon.py \
	--ignore=tests/test_fuzz.py -k 'not load_many_clients and not random_bytes_never_crash'

test-lowest: $(LOWEST)/.test
	@$(LOWEST)/bin/python -m pip list --format=freeze 2>/dev/null \
		| grep -iE '^($(subst $(comma),|,$(PINNED)))==' | tr '\n' ' '; echo
	$(LOWEST)/bin/python -m pytest tests $(LOWEST_SKIP) -n auto -p no:cacheprovider $(ARGS)

# Strict nbval over every notebook, once per backend this machine has (`slotlab backends`).
nbval: $(VENV)/.test
	@set -e; for backend in $$($(BIN)/slotlab backends); do \
		echo "== notebooks on the $$backend backend"; \
		SLOTLAB_BACKEND=$$backend $(BIN)/python -m pytest notebooks -n auto --dist loadfile \
			$(NBVAL) $(ARGS); \
	done

# The course as a static site, from the notebooks and their STORED outputs (nothing is run).
# The source directory is the repository itself (book/conf.py picks the course out of it);
# -W: a broken link, a missing image or any warning fails the build. Where the system lets a
# user make namespaces, it runs with no network at all: a theme that fetched would fail it.
NO_NETWORK = $(shell unshare -rn true 2>/dev/null && echo unshare -rn)
book: $(VENV)/.book
	$(NO_NETWORK) $(BIN)/sphinx-build -W --keep-going -q -b html -c book -d build/book-doctrees . build/book

# The site and JupyterLab in headless Chromium (tests/browser). Where no chromium is found they
# skip with a reason, except with SLOTLAB_REQUIRE_BROWSER=1 (CI).
browser: book
	$(BIN)/python -m pytest tests/browser -p no:cacheprovider $(ARGS)

# Stored outputs come from the authoritative backend: a real cluster.
notebooks: $(VENV)/.test
	SLOTLAB_BACKEND=real $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=300 \
		notebooks/*.ipynb

# The exercise notebooks are the lessons with the solutions cut out (slotlab.exercises), executed
# like the lessons so that strict nbval compares the stubs' "no answer yet" outputs.
exercises: $(VENV)/.test
	$(BIN)/python -m slotlab.exercises build
	SLOTLAB_BACKEND=real $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=300 \
		notebooks/exercises/*.ipynb

bench: $(VENV)/.test
	@set -e; for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache .hypothesis
