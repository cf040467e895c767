# The two commands a newcomer needs are `make book` and `make test`.
# Everything runs inside .venv, created on first use from requirements.txt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Tools called by name from inside (nbgrader runs `alembic`) come from the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Jupyter Book 1.x; -W turns every Sphinx warning into an error, -n checks every reference.
BOOK_FLAGS ?= -W -n --keep-going

.PHONY: help venv system-packages book test exercises clean-book clean

help:
	@echo "make book       build the HTML book into _build/html (every chapter executed, cached)"
	@echo "make test       run the whole test-suite"
	@echo "make exercises  regenerate exercises/ from solutions/ with nbgrader (instructors)"
	@echo "make clean      remove _build (the execution cache included)"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

book: $(STAMP)
	$(BIN)/jupyter-book build . --builder html $(BOOK_FLAGS)
	@echo "Open _build/html/index.html"

# Debian packages some tests need (browser, database, sandbox): installed when missing.
system-packages:
	@bash tools/install-system-packages.sh

test: $(STAMP) system-packages
	$(BIN)/python -m pytest

exercises: $(STAMP)
	$(BIN)/python -m cnnbook.grading.release --all

clean-book:
	rm -rf _build/html _build/jupyter_execute

clean:
	rm -rf _build
