# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv if needed, install, train a small CNN under the tracer
#   make test   - create .venv if needed, install with test extras, run every test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
STAMP := $(VENV)/.dsnotebook-installed

.PHONY: demo test test-fast bench js chromium clean

$(STAMP): pyproject.toml js/package.json js/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[test,examples]"
	touch $(STAMP)

js: $(STAMP)
	cd js && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

demo: $(STAMP)
	$(PY) -m dsnotebook demo

test: $(STAMP) js chromium
	$(VENV)/bin/lint-imports
	cd js && npm test --silent
	$(PY) -m pytest -q tests notebooks --nbval-lax -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not browser" -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) js/node_modules dsnotebook/widgets/static test-artifacts runs notebooks/runs
