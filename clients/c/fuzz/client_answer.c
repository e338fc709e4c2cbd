/*
 * client_answer.c: libFuzzer target for the C client's answer parser (parse_answer in
 * yololoss_client.c, included here to reach it): whatever a daemon, a proxy or a broken
 * link sends back, the client returns an error or a result, and never reads or writes out
 * of bounds, leaks or crashes (ASan, UBSan, LeakSanitizer).
 *
 * Input: byte 0 the mode (bit 0 gradients, 1 FP64, 2 compact gradient layout, 3 compact
 * request, 4 outputs in shared memory, 5 no Inference-Header-Content-Length, 6 into the
 * caller's buffers), bytes 1-2 the header length (little-endian), the rest the answer body.
 * The request is fixed: yolov3-tiny, B = 1, grids 1 and 2, C = 1, one box.
 *   make fuzz-client [FUZZ_SECONDS=60]; make fuzz-client-regress (make test)
 */
#include "../yololoss_client.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int mode = data[0];
    static float o0[18], o1[72], bx[5] = {10, 10, 20, 20, 0};
    static double into0[72], into1[72]; /* large enough for either grad type */
    ylc_tensor outs[2] = {{o0, YLC_F32, 4, {1, 1, 1, 18}}, {o1, YLC_F32, 4, {1, 2, 2, 18}}};
    ylc_tensor boxes = {bx, YLC_F32, 3, {1, 1, 5}};
    ylc_request req = {.outputs = outs, .n_outputs = 2, .boxes = &boxes, .grads = mode & 1,
                       .grad_datatype = mode & 2 ? YLC_F64 : YLC_F32,
                       .grad_layout = mode & 4 ? YLC_GRAD_COMPACT : YLC_GRAD_DENSE};
    if (mode & 64) {
        req.grad_into[0] = into0;
        req.grad_into[1] = into1;
    }
    ylc_compact_plan plan;
    bool compact = (mode & 8) && ylc_compact_plan_make(&plan, outs, 2, &boxes, NULL, 0) == 0;
    size_t es = mode & 2 ? 8 : 4;

    /* the outputs a shared-memory request would have placed, in a small region */
    static char region[4096];
    ylc_shm shm = {.key = "/fuzz", .name = "fuzz", .base = region, .size = sizeof region};
    out_desc gout[4];
    int n_gout = 0;
    for (int l = 0; l < 2 && req.grads; l++) {
        int64_t anchors = l ? 12 : 3;
        if (compact) {
            snprintf(gout[n_gout].name, sizeof gout[0].name, "grad_%d_obj", l);
            gout[n_gout++].bytes = (size_t)anchors * es;
            snprintf(gout[n_gout].name, sizeof gout[0].name, "grad_%d_rows", l);
            gout[n_gout++].bytes = (size_t)(plan.n_rows[l] * 6) * es;
        } else {
            snprintf(gout[n_gout].name, sizeof gout[0].name, "grad_%d", l);
            gout[n_gout++].bytes = (size_t)anchors * 6 * es;
        }
    }
    size_t off = 0;
    for (int i = 0; i < n_gout; i++) {
        gout[i].off = off;
        off = align_up(off + gout[i].bytes);
    }
    if (off > sizeof region)
        n_gout = 0;
    memcpy(region, data, size < sizeof region ? size : sizeof region); /* some content */

    ylc_answer a = {{0}, (mode & 32) ? -1 : (long long)(data[1] | data[2] << 8), -1};
    ylc_sb_put(&a.body, data + 3, size - 3);
    answer_ctx x = {&req, compact ? &plan : NULL, es, (mode & 16) ? gout : NULL,
                    (mode & 16) ? n_gout : 0, &shm};
    ylc_result res;
    ylc_error err;
    memset(&res, 0, sizeof res);
    int rc = parse_answer(&a, &x, &res, &err);
    if (getenv("YLC_FUZZ_VERBOSE")) /* reproducing: what the parser said */
        fprintf(stderr, "mode %d: %s\n", mode, rc ? err.msg : "parsed");
    if (rc == 0 && res.num_layers != 2)
        __builtin_trap(); /* a result is a whole result */
    ylc_result_free(&res);
    free(a.body.p);
    if (compact)
        ylc_compact_plan_free(&plan);
    return 0;
}
