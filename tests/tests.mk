# Core tests: Check suites in tests/core, golden cases made by the numpy reference in
# tests/reference, randomised comparisons against that reference in tests/python.
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)
TEST_CORE_SRC := $(wildcard tests/core/*.c)
TEST_CORE_OBJ := $(patsubst tests/core/%.c,$(B)/tests/core/%.o,$(TEST_CORE_SRC))

# The golden cases are .npy files, read with the project's one .npy implementation, the C
# client's (clients/c/npyfile.c), compiled here on its own: the client library is not needed.
TEST_NPY_OBJ := $(B)/tests/core/npyfile.o
$(TEST_NPY_OBJ): clients/c/npyfile.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Iclients/c -c $< -o $@

$(B)/tests/core/%.o: tests/core/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CORE_INC) -Iclients/c $(CHECK_CFLAGS) -c $< -o $@

# test_core: every Check suite of the core (golden cases, invariants, errors, gradients).
$(B)/test_core: $(filter-out $(B)/tests/core/eval_case.o,$(TEST_CORE_OBJ)) $(TEST_NPY_OBJ) $(CORE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(CHECK_LIBS) -lm -lpthread

# eval_case: runs the core on a case directory of .npy files, for the Python comparisons.
$(B)/eval_case: $(B)/tests/core/eval_case.o $(B)/tests/core/golden_case.o $(TEST_NPY_OBJ) $(CORE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ -lm -lpthread

ALL_BINS += $(B)/test_core $(B)/eval_case

.PHONY: test-core test-core-python
test-core: $(B)/test_core
	CK_FORK=yes $(B)/test_core

test-core-python: $(B)/eval_case $(B)/yololoss-eval
	YL_EVAL_CASE=$(B)/eval_case YL_EVAL_CLI=$(B)/yololoss-eval $(PYTHON) -m pytest -q tests/python

TEST_RUNS += test-core test-core-python

# The same core suite under AddressSanitizer, UndefinedBehaviorSanitizer, ThreadSanitizer
# and valgrind
# (leaks are errors). Each sanitizer builds into its own build/<name>/ tree.
.PHONY: test-core-sanitize
test-core-sanitize:
	$(MAKE) --no-print-directory SANITIZER=address test-core
	$(MAKE) --no-print-directory SANITIZER=undefined test-core
	$(MAKE) --no-print-directory SANITIZER=thread test-core
	$(MAKE) --no-print-directory build/test_core
	YL_TEST_QUICK=1 CK_FORK=no valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  --error-exitcode=9 build/test_core
ifeq ($(SANITIZER),)
TEST_RUNS += test-core-sanitize
endif
