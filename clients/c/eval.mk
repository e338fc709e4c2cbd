# yololoss-eval: COCO / VOC detection metrics of JSON files on the core's evaluator (no
# daemon): the core library, jansson for the JSON, the project's .npy writer for --dump.
EVAL_CLI_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
EVAL_CLI_LIBS := $(shell pkg-config --libs jansson 2>/dev/null)

$(B)/eval_cli/%.o: clients/c/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Iclients/c $(CORE_INC) $(EVAL_CLI_CFLAGS) -c $< -o $@

$(B)/yololoss-eval: $(B)/eval_cli/yololoss_eval.o $(B)/eval_cli/coco_json.o \
		$(B)/eval_cli/npyfile.o $(CORE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(EVAL_CLI_LIBS) -lm

ALL_BINS += $(B)/yololoss-eval
