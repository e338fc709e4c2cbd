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

# vexp.c alone is built with -ffast-math so gcc vectorises exp through glibc's libmvec.
$(B)/core/vexp.o: core/vexp.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O3 -ffast-math -fPIC $(CORE_INC) -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

ALL_BINS += $(CORE_LIB)
