# Two commands on a fresh machine: `make run` (dashboard on the built-in sample), `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# Test processes (pytest-xdist), a file at a time, the slowest files first (tests/conftest.py). Three on
# CI's two cores: a third keeps the CPU busy while another waits on a browser, a server or a
# subprocess (on 2 cores the suite took 444 s with three, 486 s with two, in the same hour).
TEST_WORKERS ?= 3
# The dask LocalCluster tests run in a pytest of their own, given only the files that hold them.
CLUSTER_TESTS = $(shell grep -l "pytest.mark.cluster" tests/test_*.py)

.PHONY: run test install install-dev browser latex bench bench-scale clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: install, make the built-in sample if it is missing, serve the dashboard on 127.0.0.1:$(PORT)
run: $(VENV)/.installed
	$(PY) -m core sample --out data/sample --if-missing
	$(PY) -m ui.serve --server.address 127.0.0.1 --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false

## test: install with the test extras (and Debian's Chromium and LaTeX for the browser and export tests, when root), run every test
test: $(VENV)/.installed-dev browser latex
	$(PY) -m pytest -m "not cluster" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20
	$(PY) -m pytest -m cluster $(CLUSTER_TESTS)

## browser: Debian's Chromium for the real-browser test; skipped quietly where apt-get is not ours to use
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

## latex: pdflatex, to compile the comparison's LaTeX export in its test (about 70 s, 150 MB); skipped like browser
latex:
	@if ! command -v pdflatex >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			texlive-latex-base texlive-latex-recommended >/dev/null; \
	fi

## bench: the quick benchmarks (bench_browser.py among them), each printing its ratio against a baseline
## measured in the same run. Not bench_scale.py (16,000 galaxies: `make bench-scale`), nor gpu_check.py
## (by hand, on a GPU machine).
BENCH_SLOW := benchmarks/bench_scale.py
bench: $(VENV)/.installed-dev browser
	for b in $(filter-out $(BENCH_SLOW),$(wildcard benchmarks/bench_*.py)); do $(PY) $$b || exit 1; done

## bench-scale: how sample, build and one epoch grow with 1,000, 4,000 and 16,000 galaxies (about 5 minutes on 2 idle cores)
bench-scale: $(VENV)/.installed-dev
	$(PY) $(BENCH_SLOW)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
