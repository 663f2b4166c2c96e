# Set-up is idempotent: espeak-ng (text to speech, for the spoken world and the voice assistant) is installed
# when missing, the venv is created and filled once (torch 2.13.0 CPU first, so that nothing pulls a CUDA
# build), then reused. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polymodal-installed
BROWSER := $(VENV)/.browser-installed

.PHONY: setup demo test test-all lint format bench

$(STAMP): pyproject.toml
	command -v espeak-ng >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null) \
		|| echo "note: could not install espeak-ng (Debian package; needs root): spoken-world tests will skip"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[all]"
	touch $(STAMP)

# the web page is tested in real headless Chromium (Debian packages; the tests skip without them)
$(BROWSER):
	(command -v chromium && command -v chromedriver) >/dev/null 2>&1 \
		|| (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "note: could not install chromium (needs root): the web-page tests will skip"
	touch $(BROWSER)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/polymodal demo

test: $(STAMP) $(BROWSER)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

test-all: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py
