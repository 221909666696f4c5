# The two commands of the README:
#   make book   -- set up what the book needs, then run the main job
#   make test   -- set up everything (the book's packages, the tests' oracles and tools), then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BOOK_STAMP := $(VENV)/.book-stamp
STAMP := $(VENV)/.installed-stamp
# Local mirror of the image files (checked by sha256). CI and this machine keep one beside the checkout.
export LRPKIT_DATA_MIRROR ?= $(abspath $(wildcard ../shared/data))

# The book: `make book profile=full device=cuda`, one chapter with `chapter=what-lrp-sees`,
# an experiment's results made on a cluster with `results="grid-tutorial=results/tutorial"`.
# auto: device cuda if present, else cpu; profile full on cuda, else quick.
profile ?= auto
device ?= auto
weights ?= auto
chapter ?=
results ?=

.PHONY: setup system book test bench clean

setup: $(STAMP) system

system:
	sh scripts/setup-system.sh

# The book's packages only: `make book` needs no test oracle, browser, grader or validator.
$(BOOK_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[book]'
	# Quantus 0.6 (chapter 4 runs its ROAD; the tests' localisation oracle) without its opencv-python (pyproject's book extra)
	$(PY) -m pip install --quiet --no-deps quantus==0.6.0
	touch $(BOOK_STAMP)

# Everything: the book's packages, the tests' oracles and tools, the instructors' grader.
$(STAMP): $(BOOK_STAMP)
	$(PY) -m pip install --quiet -e '.[test,book,teach]'
	# cffconvert (CITATION.cff's validator in tests/test_publishing.py) pins jsonschema 3.2, which would break the project's jsonschema 4: its own venv
	$(PYTHON) -m venv $(VENV)/tools/cffconvert
	$(VENV)/tools/cffconvert/bin/pip install --quiet cffconvert==2.0.0
	touch $(STAMP)

book: $(BOOK_STAMP)
	$(PY) -m lrpkit.book build --profile $(profile) --device $(device) --weights $(weights) $(if $(chapter),--chapter $(chapter)) $(foreach r,$(results),--results $(r))

test: setup
	$(PY) -m pytest

bench: setup
	@echo "bench: LRP speed, then Pixel-Flipping speed; each prints its expected runtime and a progress bar (stderr)"
	$(PY) bench/lrp_speed.py
	$(PY) bench/pf_speed.py
	$(PY) bench/experiment_speed.py
	$(PY) bench/sweep_speed.py
	$(PY) bench/synthetic_speed.py
	$(PY) bench/road_speed.py

clean:
	rm -rf _build book/_generated $(VENV)
