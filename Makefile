# animal-avatar: `make run` starts the service offline, `make test` runs every check.
# Both set up what they need first: a .venv, the pinned packages, the local face models.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
FUZZ_VENV := .venv-fuzz
FUZZ_STAMP := $(FUZZ_VENV)/.installed
REQUIREMENTS := requirements.txt requirements-dev.txt cloud_functions/requirements.txt \
	cloud_functions/requirements-local.txt batch/requirements.txt

.PHONY: run test lint typecheck unit infra-check install models chromium migrate bench gallery batch fuzz \
	screenshots clean

run: install models migrate
	bash scripts/run-local.sh

test: install models chromium $(CHECKOV_STAMP) lint typecheck unit

install: $(STAMP)

$(STAMP): $(REQUIREMENTS)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The repository root (package `api`) on the path. Not cloud_functions/: the function's
	# package `avatar` is found by functions-framework (--source), pytest and mypy (pyproject)
	# and the scripts themselves, so the API process could not import it even by mistake.
	$(PY) -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'animal_avatar.pth').write_text('$(CURDIR)\n')"
	touch $@

# checkov pins many packages of its own: it lives in a virtual environment of its own.
$(CHECKOV_STAMP): requirements-checkov.txt
	test -d $(CHECKOV_VENV) || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

# schemathesis pins its own packages too: a virtual environment of its own (make fuzz).
$(FUZZ_STAMP): requirements-fuzz.txt
	test -d $(FUZZ_VENV) || $(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/python -m pip install --quiet -r requirements-fuzz.txt
	touch $@

models: install
	$(PY) scripts/fetch_models.py

# Debian's chromium, which the demo page's browser tests drive (apt-get, only when missing).
chromium:
	bash scripts/install-chromium.sh

migrate: install
	$(VENV)/bin/alembic -c api/alembic.ini upgrade head

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy api cloud_functions batch

unit: install models chromium
	$(VENV)/bin/pytest

bench: install models
	$(PY) bench/pipeline.py
	$(PY) bench/gcp_overhead.py
	$(PY) bench/strip.py
	$(PY) bench/concurrency.py
	$(PY) bench/history.py
	$(PY) bench/footprint.py
	$(PY) bench/batch.py
	$(PY) bench/webhooks.py

# The batch job over a folder or gs:// prefix: make batch INPUT=photos OUTPUT=out ANIMAL=all
# (more options: BATCH_ARGS="--workers 2 --retry-failed"; python -m batch --help).
batch: install models
	$(PY) -m batch $(if $(INPUT),--input "$(INPUT)") $(if $(OUTPUT),--output "$(OUTPUT)") \
		$(if $(ANIMAL),--animal "$(ANIMAL)") $(BATCH_ARGS)

# schemathesis (--checks all) against the running API and function: make fuzz DATABASE_URL=...
# (FUZZ_SECONDS=300 by default; reports in var/fuzz/).
fuzz: install models $(FUZZ_STAMP)
	bash scripts/fuzz.sh

gallery: install models
	$(PY) scripts/gallery.py

# The demo page's result view at 1280 and 360 px (docs/demo-*.jpg, the README's first picture),
# taken by its browser test.
screenshots: install models chromium
	SCREENSHOT_DIR=$(CURDIR)/docs $(VENV)/bin/pytest -q tests/api/test_demo_page.py -k whole_flow

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(FUZZ_VENV) .pytest_cache .mypy_cache .ruff_cache
