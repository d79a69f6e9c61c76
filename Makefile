# Two commands: `make run` (dashboard on 127.0.0.1:8501) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: install demo-db run test browser bench clean-demo

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo-db: install
	$(VENV)/bin/rdm build-demo --if-missing

run: demo-db
	$(VENV)/bin/rdm dashboard --host $(HOST) --port $(PORT)

# Debian's Chromium for the browser test (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium missing: sudo apt-get install chromium (the browser test will be skipped)"; fi; }

test: install browser
	$(PY) -m pytest -q

bench: install
	$(PY) bench/ingest.py
	$(PY) bench/retrieval.py
	$(PY) bench/generate.py
	$(PY) bench/dashboard.py
	$(PY) bench/scorers.py
	$(PY) bench/study_calibration.py
	$(MAKE) browser
	$(PY) bench/browser.py

clean-demo:
	rm -rf data/demo-db data/.demo-db.building
