# libyololoss: pure C11 + libm, built as a static library (and a shared one for tools).
CORE_SRC := $(wildcard core/*.c)
CORE_OBJ := $(patsubst core/%.c,$(B)/core/%.o,$(CORE_SRC))
CORE_LIB := $(B)/libyololoss.a
CORE_INC := -Icore
# The kernels are numeric loops: -O3 lets gcc vectorise the finiteness scan. Never
# -ffast-math: exactness and isfinite() depend on IEEE semantics.
$(B)/core/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 -fPIC -Wdouble-promotion -Wpedantic $(CORE_INC) -c $< -o $@

# kernels.c may assume floating-point operations never trap (its inputs are proven finite
# first, and nothing reads the exception flags): that alone lets gcc turn its selects into
# vector blends. It changes no result: no reassociation, no contraction, IEEE rounding.
$(B)/core/kernels.o: core/kernels.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 -fno-trapping-math -fPIC -Wdouble-promotion -Wpedantic $(CORE_INC) -c $< -o $@

# darknet.c emulates float32 arithmetic by rounding each double result to float. gcc 12's
# SLP vectorizer, pairing the two log() calls of delta_yolo_box, dropped the rounding of their
# results (seen as a wrong last bit against the real darknet in tests/python/
# test_darknet_real.py), so that file is built without it.
$(B)/core/darknet.o: core/darknet.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 -fno-tree-slp-vectorize -fPIC -Wdouble-promotion -Wpedantic $(CORE_INC) -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

ALL_BINS += $(CORE_LIB)
