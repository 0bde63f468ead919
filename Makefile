# The two set-up commands of the README. Each installs what it needs into the active Python.
PYTHON ?= python3

.PHONY: sample test test-fast

sample:
	$(PYTHON) -m pip install -q -e .
	$(PYTHON) -m pipeline convert --config configs/sample.yaml

test:
	$(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m pytest

# The edit-test cycle: pure and small-graph tests, no TensorFlow, few property examples (under a minute).
test-fast:
	$(PYTHON) -c "import pipeline, hypothesis, pytest" 2>/dev/null || $(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m pytest --fast -q
