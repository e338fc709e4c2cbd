# Benchmarks print one JSON line per configuration; never timed assertions.
$(B)/bench_core: bench/bench_core.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 $(CORE_INC) -o $@ $(filter %.c %.a,$^) -lm -lpthread

ALL_BINS += $(B)/bench_core
.PHONY: bench-core
bench-core: $(B)/bench_core
	$(B)/bench_core
BENCH_RUNS += bench-core

# Each loss definition's loss + gradient beside keras-yolo3's, same workload, same run.
$(B)/bench_definitions: bench/bench_definitions.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 $(CORE_INC) -o $@ $(filter %.c %.a,$^) -lm -lpthread

ALL_BINS += $(B)/bench_definitions
.PHONY: bench-definitions
bench-definitions: $(B)/bench_definitions
	$(B)/bench_definitions
BENCH_RUNS += bench-definitions

# The framework baseline: the numpy float64 reference on the same workload, one thread.
.PHONY: bench-reference
bench-reference:
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PYTHON) bench/bench_reference.py
BENCH_RUNS += bench-reference

# The detection evaluator on a COCO-sized synthetic set: C (one thread) beside the numpy
# port of pycocotools (and pycocotools itself with PYCOCOTOOLS_PATH); bench/bench_eval.py.
.PHONY: bench-eval
bench-eval: $(B)/yololoss-eval $(B)/yololossd
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PYTHON) bench/bench_eval.py --cli $(B)/yololoss-eval \
	  --daemon $(B)/yololossd
BENCH_RUNS += bench-eval
