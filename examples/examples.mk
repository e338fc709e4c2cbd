# examples/: the training example (train_yolo.py) and its tests: its pieces against
# hand-worked answers and the numpy reference, and short smoke runs (--steps) against a
# daemon each run starts on a free port. CPU only; needs python3-torch and -torchvision.
.PHONY: test-examples
test-examples: $(B)/yololossd
	YL_DAEMON=$(B)/yololossd $(PYTHON) -m pytest -q -rs -p no:cacheprovider examples/tests

TEST_RUNS += test-examples
