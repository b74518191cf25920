# troth — two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SEED := examples/seed-service/policy.yaml
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench venv clean messages

$(BIN)/troth: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/troth

venv: $(BIN)/troth

run: venv
	$(BIN)/python examples/seed-service/service/make_db.py  # the service's own demo database (lumen.db)
	$(BIN)/troth check $(SEED) --connect
	$(BIN)/troth render $(SEED) --format html -o build/policy
	$(BIN)/troth serve $(SEED) --host $(HOST) --port $(PORT)

lint: venv
	$(BIN)/ruff check src tests bench scripts examples
	$(BIN)/ruff format --check src tests bench scripts examples
	$(BIN)/mypy

test: venv lint
	scripts/install-test-deps.sh
	$(BIN)/pytest

bench: venv
	scripts/install-test-deps.sh
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/consent.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/vault.py
	$(BIN)/python bench/tracking.py
	$(BIN)/python bench/rights.py
	$(BIN)/python bench/scan.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

# Re-extract troth's messages after changing a translatable string; then update each .po.
messages: venv
	$(BIN)/pybabel extract -F babel.cfg -k _ -k gettext -k ngettext:1,2 --no-location \
	  --sort-output --omit-header -o src/troth/render/locales/messages.pot .
