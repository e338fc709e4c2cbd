# Benchmarks print one JSON line per configuration; never timed assertions.
$(B)/bench_core: bench/bench_core.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 $(CORE_INC) -o $@ $(filter %.c %.a,$^) -lm -lpthread

ALL_BINS += $(B)/bench_core
.PHONY: bench-core
bench-core: $(B)/bench_core
	$(B)/bench_core
BENCH_RUNS += bench-core

# The framework baseline: the numpy float64 reference on the same workload, one thread.
.PHONY: bench-reference
bench-reference:
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PYTHON) bench/bench_reference.py
BENCH_RUNS += bench-reference
