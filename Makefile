# r1lit: two commands for a newcomer.  `make demo` runs the main job, `make test` runs every test.
# Both create .venv on first use.  pixi.toml mirrors these targets for clusters.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.r1lit-installed

.PHONY: demo test book export clean-nbs help

help:
	@echo "make demo   build tiny VLMs and synthetic scenes, train SFT+GRPO, evaluate, judge, build the book"
	@echo "make test   nbdev export/clean checks, notebook tests, integration tests"
	@echo "make book   build the book from the latest runs into _build/html"

$(STAMP): settings.ini setup.py pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/r1lit demo

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash tests/run_all.sh

book: $(STAMP)
	$(BIN)/r1lit book

export: $(STAMP)
	$(BIN)/nbdev_export

clean-nbs: $(STAMP)
	$(BIN)/nbdev_clean
