# ewarn — every target bootstraps .venv on a machine with only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
STAMP_BENCH := $(VENV)/.installed-bench
DEMO_WS ?= ewarn-demo

.PHONY: demo test bench lint clean venv browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[grib]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,grib,dask]'
	touch $@ $(STAMP_RUN)

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,grib,dask,bench]'
	touch $@ $(STAMP_TEST) $(STAMP_RUN)

venv: $(STAMP_RUN)

## make demo: build the embedded demo region and storm and run the whole chain
demo: $(STAMP_RUN)
	$(BIN)/ewarn demo --workspace $(DEMO_WS)

## make browser: headless Chromium for the scenario report's browser tests (Debian package;
## best effort: without it those tests are skipped and say why)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 \
	  || ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	       && timeout 600 sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium' >/dev/null 2>&1 ) \
	  || echo "make browser: chromium is not installed; the report's browser tests will be skipped"

## make test: the whole test suite (non-zero exit on any failure)
test: $(STAMP_TEST) browser
	$(BIN)/python -m pytest -q

## make bench: benchmarks, each printed beside its baseline as a ratio
bench: $(STAMP_BENCH)
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

## make lint: ruff
lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_WS) .pytest_cache build dist
