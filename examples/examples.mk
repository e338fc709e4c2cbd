# examples/: the training example (train_yolo.py) and its tests: its pieces against
# hand-worked answers and the numpy reference, and short smoke runs (--steps) against a
# daemon each run starts on a free port. CPU only; needs python3-torch and -torchvision.
.PHONY: test-examples
test-examples: $(B)/yololossd
	YL_DAEMON=$(B)/yololossd $(PYTHON) -m pytest -q -rs -p no:cacheprovider examples/tests

TEST_RUNS += test-examples

# The README's dashboard pictures (docs/dashboard.png, docs/dashboard-images.png) from real
# training runs: a daemon on a temporary history, two runs of train_yolo.py that differ in
# their learning rate (the second with 5% of its labels damaged, so the images view has
# something to find), then Chromium. A few minutes; not part of make test. The dashboard's
# browser test keeps its own fixture (and its escaping checks) and writes to build/.
SHOT_PORT ?= 18231
.PHONY: docs-screenshots
docs-screenshots: $(B)/yololossd $(DASH_NPM)
	@set -e; tmp=$$(mktemp -d); \
	$(B)/yololossd --host 127.0.0.1 --port $(SHOT_PORT) --history $$tmp/h.sqlite \
	  --image-url '/images/{id}.png' 2>$$tmp/daemon.log & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -rf $$tmp' EXIT; \
	sleep 1; \
	$(PYTHON) examples/train_yolo.py --url http://127.0.0.1:$(SHOT_PORT) --epochs 6 \
	  --run tiny-adamw-lr2e-3 --quiet; \
	$(PYTHON) examples/train_yolo.py --url http://127.0.0.1:$(SHOT_PORT) --epochs 6 \
	  --lr 5e-4 --corrupt 0.05 --run tiny-adamw-lr5e-4-noisy5pct --quiet; \
	node examples/dashboard_screenshot.mjs http://127.0.0.1:$(SHOT_PORT) docs
