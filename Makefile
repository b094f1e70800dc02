# Two commands on a fresh clone: `make lab` and `make test`.  Both create .venv on first use
# (and again whenever pyproject.toml or requirements.lock change), then reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready
# nbgrader and the course package, in an environment of their own (so that what nbgrader brings,
# such as notebook and alembic, stays out of the course's): for the compatibility tests and the
# grading benchmark.
NBGRADER_VENV  := .venv-nbgrader
NBGRADER_READY := $(NBGRADER_VENV)/.ready
NBGRADER_PIN   := nbgrader==0.9.6
# The website's builder (Sphinx, MyST-NB, the book theme) in an environment of its own, beside the
# course's pinned packages (it executes the notebooks on them): requirements-site.lock.
SITE_VENV  := .venv-site
SITE_READY := $(SITE_VENV)/.ready
# uv installs the pinned set in seconds where pip takes minutes; it is bootstrapped into .venv by
# the Python that runs make, so a fresh clone still needs only Python and make.
UV_PIN := uv==0.13.9
UV     := $(BIN)/uv
# Tests run in parallel worker processes; a notebook's cells stay together on one worker (they share
# its kernel). TEST_WORKERS=1 runs them one at a time: the proofs do not rely on an idle machine.
TEST_WORKERS ?= auto

.PHONY: lab lab-master site site-env test check bench stress notebooks lock clean release nbgrader-env versions messages

$(READY): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; ok = (3, 11) <= v <= (3, 13); \
	  print("Python %d.%d found; the course needs Python 3.11, 3.12 or 3.13 (set PYTHON=python3.12, say)." % v) if not ok else None; \
	  sys.exit(0 if ok else 1)'
	@echo "Setting up $(VENV) (first time only): uv, then the pinned packages of requirements.lock"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(UV_PIN)
	$(UV) pip install --python $(BIN)/python -r requirements.lock
	$(UV) pip install --python $(BIN)/python --no-deps -e .
	@touch $(READY)

# More options for JupyterLab, e.g. `make lab LAB_OPTIONS="--no-browser --port=8900"`; the Chinese
# edition (中文版) with `make lab LANGUAGE=zh-CN`.
LAB_OPTIONS ?=

## lab: set up (first time only), copy the course into my-course/ (your own copy), open JupyterLab on chapter 1
lab: $(READY)
	$(BIN)/bgcourse lab $(if $(LANGUAGE),--language $(LANGUAGE)) $(LAB_OPTIONS)

## lab-master: JupyterLab on the master notebooks, solutions and answers filled in (authors, instructors)
lab-master: $(READY)
	$(BIN)/bgcourse lab --master $(if $(LANGUAGE),--language $(LANGUAGE)) $(LAB_OPTIONS)

## test: set up (first time only), then lint, type-check, and run every test and notebook
test: $(READY) $(NBGRADER_READY) $(SITE_READY)
	$(BIN)/ruff check src solutions tests benchmarks conftest.py
	$(BIN)/ruff format --check src solutions tests benchmarks conftest.py
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## stress: run every notebook pinned to one CPU, beside a CPU hog, and with 2 GiB of memory (3 runs each)
stress: $(READY)
	$(BIN)/python tests/stress.py $(STRESS_FLAGS)

## bench: print set-up (uv beside pip, make lab on a fresh clone; BENCH_FLAGS=--suite adds make test), the foundation's timings, chapters 5 and 7, grading vs nbgrader
bench: $(READY) $(NBGRADER_READY)
	$(BIN)/python benchmarks/bench_setup.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/bench_foundation.py
	$(BIN)/python benchmarks/bench_ch05.py
	$(BIN)/python benchmarks/bench_ch07.py
	$(BIN)/python benchmarks/bench_grading.py

## versions: measure the version-dependent facts on every stack of the version matrix (one uv environment each) and rewrite its table
versions: $(READY)
	$(BIN)/bgcourse versions $(VERSIONS_FLAGS)

## release: regenerate release/, the learners' copies (practice and assessed), from notebooks/ and quizzes/
release: $(READY)
	$(BIN)/bgcourse release

# uv links the packages both environments share from its cache instead of downloading them again.
$(NBGRADER_READY): $(READY)
	@echo "Setting up $(NBGRADER_VENV) (first time only): nbgrader beside the course, for the compatibility tests"
	$(UV) venv --quiet --allow-existing --python $(BIN)/python $(NBGRADER_VENV)
	$(UV) pip install --python $(NBGRADER_VENV)/bin/python -r requirements.lock $(NBGRADER_PIN) -c requirements.lock
	$(UV) pip install --python $(NBGRADER_VENV)/bin/python --no-deps -e .
	@touch $(NBGRADER_READY)

$(SITE_READY): $(READY) requirements-site.lock
	@echo "Setting up $(SITE_VENV) (first time only): the website's builder beside the course"
	$(UV) venv --quiet --allow-existing --python $(BIN)/python $(SITE_VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(SITE_VENV)/bin/python -r requirements-site.lock
	$(UV) pip install --quiet --python $(SITE_VENV)/bin/python --no-deps -e .
	@touch $(SITE_READY)

## site: build the course as a website in site/ (both editions, every chapter executed; the execution is cached)
site: $(SITE_READY)
	$(SITE_VENV)/bin/bgcourse site $(SITE_FLAGS)

## site-env: set up .venv-site (Sphinx, MyST-NB and the book theme beside the course), used by `make site` and `make test`
site-env: $(SITE_READY)

## nbgrader-env: set up .venv-nbgrader (nbgrader and the course), used by `make test` and `make bench`
nbgrader-env: $(NBGRADER_READY)

## notebooks: after editing a chapter's .py (or .ipynb), bring its twin up to date
notebooks: $(READY)
	$(BIN)/jupytext --sync notebooks/*.ipynb notebooks/zh-CN/*.ipynb

## messages: after changing a message marked _("...") in src/ or a figure's text in a chapter, merge it into each edition's catalog (then translate it)
messages: $(READY)
	$(BIN)/pybabel extract -F babel.cfg --add-location=file --sort-by-file --no-wrap --omit-header \
	  -o $(VENV)/bgcourse.pot .
	$(BIN)/pybabel update --no-wrap --ignore-obsolete --omit-header -D bgcourse -i $(VENV)/bgcourse.pot -d src/bgcourse/locale

## lock: re-resolve requirements.lock after changing a pin in pyproject.toml
lock: $(READY)
	$(UV) pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	  --no-header --no-annotate -o requirements.lock
	$(UV) pip compile pyproject.toml --extra site --universal --python-version 3.11 -c requirements.lock \
	  --no-header --no-annotate -o requirements-site.lock

clean:
	rm -rf $(VENV) $(NBGRADER_VENV) $(SITE_VENV) .venv-versions
