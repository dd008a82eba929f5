# digit-lens: two commands for a newcomer.
#   make run    set everything up, get MNIST, train a quick run if there is none, open the dashboard
#   make test   set everything up and run the whole test suite
#   make serve  serve the runs read-only to a class (no training, nothing written into the runs; see README)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUNS   ?= $(or $(DIGIT_LENS_RUNS),runs)
PORT   ?= 8501
# extra pip options, e.g. PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu" for PyTorch's CPU build
PIP_EXTRA ?=

.PHONY: setup data run serve train-quick test bench clean constraints

setup: $(VENV)/.installed

# constraints.txt pins every package to the versions the tests last passed with (make constraints).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir $(PIP_EXTRA) -c constraints.txt -e ".[dev]"
	touch $@

data: setup
	$(PY) -m data.mnist

train-quick: data
	@if ! ls $(RUNS)/*/config.json >/dev/null 2>&1; then \
		echo "No runs in $(RUNS) yet: training a quick run (about 2 minutes on a CPU)."; \
		$(PY) -m model.train --preset quick --runs-dir $(RUNS); \
	fi

run: train-quick
	$(VENV)/bin/streamlit run dashboard/app.py --server.port $(PORT)

# read-only: no training form, no writes into $(RUNS); add ADDRESS=0.0.0.0 to serve on the network
ADDRESS ?= localhost
serve: data
	DIGIT_LENS_RUNS=$(RUNS) $(VENV)/bin/streamlit run dashboard/app.py --server.port $(PORT) \
		--server.address $(ADDRESS) -- --read-only

test: data
	$(PY) -m pytest -q

bench: data
	$(PY) bench/train_throughput.py
	$(PY) bench/analysis_speed.py
	$(PY) bench/attribution_speed.py
	$(PY) bench/draw_latency.py
	$(PY) bench/page_render.py
	$(PY) bench/many_runs.py
	$(PY) bench/attribution_page.py
	$(PY) bench/why_speed.py
	$(PY) bench/load_test.py --sessions 1 4
	$(PY) bench/session_memory.py

# constraints.txt: the exact versions of the working venv (pip freeze without digit-lens itself; torch without its
# local label, so that torch==2.13.0 matches the CPU build 2.13.0+cpu here and the PyPI build elsewhere).
constraints:
	{ echo '# Exact versions of the working venv: pip install -c constraints.txt -e ".[dev]" reproduces it.'; \
	  echo '# Regenerate with: make constraints'; \
	  $(PY) -m pip freeze --exclude-editable | grep -iv '^digit-lens' | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache artifacts
