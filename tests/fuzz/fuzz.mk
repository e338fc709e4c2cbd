# libFuzzer targets for the core's parsers and validators (tests/fuzz/core_*.c), built
# with clang, AddressSanitizer and UndefinedBehaviorSanitizer into $(B)/fuzz/ (the core
# is compiled again there with clang and coverage instrumentation; gcc's objects in
# $(B)/core are not used).
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="core_boxes"]   fuzz each target, in turn
#   make fuzz-regress      replay the checked-in corpora once (part of `make test`)
#   make fuzz-ci           fuzz each target for 30 s (for CI)
# New inputs go to $(B)/fuzz/corpus/<target>/ (kept between runs; the checked-in corpus in
# tests/fuzz/corpus/<target>/ is only read), crashes to $(B)/fuzz/artifacts/<target>/.
# A crash becomes a regression test by copying its file into tests/fuzz/corpus/<target>/
# as crash-<what>; reproduce one with $(B)/fuzz/<target> FILE (YLF_VERBOSE=1 says what each
# call returned). While a known core bug is unfixed its crash-* input stops every fuzzing
# run at the start; YLF_TOLERATE_KNOWN=1 make fuzz excuses exactly the known bugs
# (YLF_KNOWN in tests/fuzz/fuzz_common.h) so the fuzzers look for others.
# Seeds: tests/fuzz/make_seeds.py writes tests/fuzz/corpus/*/seed-*.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= core_problem core_boxes core_dense core_compact eval_json
FUZZ_DIR := $(B)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS_ALL = $(STD) -g -O1 $(FUZZ_SAN) $(FUZZ_CFLAGS)
# libFuzzer options for every run: a hang of 10 s and 2 GB of memory are bugs.
FUZZ_OPTS ?= -timeout=10 -rss_limit_mb=2048 -max_len=8192
FUZZ_CORE_OBJ := $(patsubst core/%.c,$(FUZZ_DIR)/core/%.o,$(CORE_SRC))
FUZZ_BINS := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))

# The core as gcc builds it, less -Werror (clang's warnings are not the gate here).
$(FUZZ_DIR)/core/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS_ALL) $(filter-out -Werror,$(WARN)) -fsanitize=fuzzer-no-link \
	  -MMD -MP $(CORE_INC) -c $< -o $@

$(filter-out $(FUZZ_DIR)/eval_json,$(FUZZ_BINS)): $(FUZZ_DIR)/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h $(FUZZ_CORE_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS_ALL) $(WARN) -fsanitize=fuzzer $(CORE_INC) -o $@ $< \
	  $(FUZZ_CORE_OBJ) -lm -lpthread

# eval_json: the evaluator's COCO JSON reader (clients/c/coco_json.c, on jansson) and the
# evaluator on what it read.
$(FUZZ_DIR)/eval_json: tests/fuzz/eval_json.c clients/c/coco_json.c clients/c/coco_json.h $(FUZZ_CORE_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS_ALL) $(WARN) -fsanitize=fuzzer $(CORE_INC) -Iclients/c -o $@ \
	  tests/fuzz/eval_json.c clients/c/coco_json.c $(FUZZ_CORE_OBJ) \
	  $(shell pkg-config --libs jansson 2>/dev/null) -lm -lpthread

.PHONY: fuzz fuzz-build fuzz-regress fuzz-ci
fuzz-build: $(FUZZ_BINS)

# Fuzz each target for FUZZ_SECONDS (all of them, even after one found something); fails
# when any did, naming the input it saved.
fuzz: fuzz-build
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts/$$t; \
	  echo "=== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  if $(FUZZ_DIR)/$$t $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	       -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t/ \
	       $(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t >$(FUZZ_DIR)/$$t.log 2>&1; then \
	    grep -E '^(#[0-9]+.*DONE|stat::average_exec_per_sec)' $(FUZZ_DIR)/$$t.log; \
	  else \
	    grep -E -A3 'INVARIANT|ERROR: |runtime error' $(FUZZ_DIR)/$$t.log | head -n 12; \
	    grep -E '^artifact_prefix|Test unit written' $(FUZZ_DIR)/$$t.log; \
	    echo "fuzz: $$t FAILED (log $(FUZZ_DIR)/$$t.log)"; failed="$$failed $$t"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

# Every checked-in input once, no fuzzing: the regression tests (tests/fuzz/regress.sh).
fuzz-regress: fuzz-build
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  bash tests/fuzz/regress.sh $(FUZZ_DIR)/$$t tests/fuzz/corpus/$$t \
	    $(FUZZ_DIR)/$$t.regress.log $(FUZZ_OPTS) || rc=1; \
	done; exit $$rc

fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30

TEST_RUNS += fuzz-regress
# Issue 7: CI fuzzes every target for 30 s; `make test` is what CI runs, so it is here.
TEST_RUNS += fuzz-ci
