# Thin entry points; the logic lives in Python (ecom_assets/cli.py, ecom_assets/stack/).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint format bench down status clean screenshots

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	@command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || { echo "Java 17+ is required for Spark: install openjdk-17-jre-headless or set JAVA_HOME" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install            ## start the whole platform; Ctrl-C stops it
	$(BIN)/ecom up

test: install           ## the whole suite against real PostgreSQL, Spark, Dagster and Chromium
	bash scripts/install_browser.sh
	$(BIN)/python -m pytest

screenshots: install    ## regenerate docs/images/ from the UI end-to-end test
	bash scripts/install_browser.sh
	ECOM_UI_SCREENSHOTS=1 $(BIN)/python -m pytest ecom_assets_tests/test_ui_e2e.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	for script in generator_throughput backlog latency memory views healing chaos; do \
		$(BIN)/python bench/$$script.py || exit 1; done

status: install
	$(BIN)/ecom status

down: install
	$(BIN)/ecom down

clean:
	rm -rf $(VENV) .ecom data
