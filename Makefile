# Two commands do everything: `make demo` (a short real search) and `make test` (the whole suite).
# Both create or refresh .venv. torch is pinned in the same pip command as the package so that pip takes
# the local CPU wheel instead of resolving an unpinned torch to a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.13.0

.PHONY: demo test lint clean report-check

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)" -e ".[dev,ray,export]"
	touch $(STAMP)

# A real CNN search on the built-in digits images, in a reduced space (examples/demo_space.yaml) and budget,
# then the final model (the best config trained 4x longer, tested once) and the report with its test metrics.
demo: $(STAMP)
	$(BIN)/dnc search --data digits --network cnn --space examples/demo_space.yaml \
		--method dnc --prior-points 4 --bo-steps 2 --epochs 10 --wc 0.1 --penalty time --seed 0 \
		--out runs/demo --overwrite --no-report
	$(BIN)/dnc train runs/demo

# A tiny search with its report, rendered by headless Chromium (Debian: apt-get install chromium) to a
# screenshot whose path is printed last: look at it, and at runs/report-check/plots/*.png.
report-check: $(STAMP)
	$(BIN)/dnc search --data digits --network mlp --method random --max-trials 6 --epochs 2 --penalty params \
		--quiet --overwrite --out runs/report-check
	$(BIN)/python -m deepncheap.report.screenshot runs/report-check

test: $(STAMP)
	$(BIN)/ruff check deepncheap tests
	$(BIN)/mypy deepncheap
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check deepncheap tests
	$(BIN)/ruff check deepncheap tests

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
