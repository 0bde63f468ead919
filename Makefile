# The two set-up commands of the README. Each installs what it needs into the active Python.
PYTHON ?= python3

.PHONY: sample test

sample:
	$(PYTHON) -m pip install -q -e .
	$(PYTHON) -m pipeline convert --config configs/sample.yaml

test:
	$(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m pytest
