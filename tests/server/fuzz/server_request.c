/* libFuzzer target: the daemon's parsers, on what a client could send.
 *
 * Input layout: byte 0 selects what the rest is;
 *   bits 0-1  0, 1: an infer body for yolov3 (1) or yolov3-tiny (0); 2: a gzip/deflate body
 *             (bit 2: deflate) inflated with a 64 KiB limit, then parsed as for 1;
 *             3: the rest as a path (router), an Accept-Encoding value and an anchors string
 *   bit  3    the body has an Inference-Header-Content-Length: the next two bytes (little
 *             endian) modulo the body length + 1 (so "longer than the body" happens too)
 *
 * Infer bodies are parsed with a shared-memory registry holding regions "r0" (64 KiB) and
 * "r1" (4 KiB, on the same object as r0 at offset 60 KiB, so overlaps between regions are
 * reachable) and "r2" (256 bytes, its own object), filled with small floats; the seeds
 * include compact requests and tensors in these regions.
 *
 * Invariants: a parser returns 0 or -1; on -1 the failure has a 4xx/5xx status and a
 * non-empty message; on 0 every tensor it bound lies inside the body or a buffer it owns
 * (each byte is read, so AddressSanitizer catches a wrong size), and a problem the core
 * accepts with a small enough batch is computed with gradients.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../server/v2/infer.h"
#include "../../../server/v2/shm.h"

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "\nINVARIANT VIOLATED at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, "\n");                                               \
            abort();                                                             \
        }                                                                        \
    } while (0)

static void check_fail(const yls_fail *f)
{
    CHECK(f->status >= 400 && f->status < 600, "status %u", f->status);
    CHECK(f->msg[0] != '\0' && memchr(f->msg, '\0', sizeof f->msg), "message");
}

/* The daemon's table (server/routes.c) names handlers in every layer, which this target does
 * not link; the matcher is exercised on the same patterns without handlers. */
static const yls_route_entry fuzz_routes[] = {
    {"GET", "/v2/health/live", NULL, false, NULL, false},
    {"GET", "/v2", NULL, true, NULL, false},
    {"GET", "/v2/models/stats", NULL, true, NULL, false},
    {"GET", "/v2/models/{model}", NULL, true, NULL, false},
    {"GET", "/v2/models/{model}/versions/{version}", NULL, true, NULL, false},
    {"GET", "/v2/models/{model}/ready", NULL, true, NULL, false},
    {"POST", "/v2/models/{model}/versions/{version}/infer", NULL, true, NULL, false},
    {"POST", "/v2/models/{model}/infer", NULL, true, NULL, false},
    {"GET", "/", NULL, false, NULL, false},
    {"GET", "/assets/{asset}", NULL, false, NULL, false},
    {"GET", "/v1/runs", NULL, false, NULL, false},
    {"GET", "/v1/runs/{run}/steps", NULL, false, NULL, false},
    {"GET", "/v1/runs/{run}/steps.csv", NULL, false, NULL, false},
    {"GET", "/v1/runs/{run}/images", NULL, false, NULL, false},
    {"GET", "/v1/runs/{run}/images/{image}", NULL, false, NULL, false},
    {"PUT", "/v1/runs/{run}/config", NULL, true, NULL, true},
    {"DELETE", "/v1/runs/{run}", NULL, true, NULL, false},
    {"GET", "/v1/runs/{run}", NULL, false, NULL, false},
    {NULL, NULL, NULL, false, NULL, false},
};

static yls_models models;

static yls_model *fuzz_find_model(const yls_server *s, const char *name, size_t len)
{
    (void)s;
    return yls_models_find(&models, name, len);
}

static const yls_router fuzz_router = {fuzz_routes, fuzz_find_model};

static volatile unsigned sink;

static void touch_bytes(const void *data, size_t n)
{
    const unsigned char *p = data;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    sink += s;
}

static void touch(const yl_tensor *t)
{
    size_t n = yl_dtype_size(t->dtype);
    CHECK(n > 0, "dtype %d", t->dtype);
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    const unsigned char *p = t->data;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    sink += s;
}

static yls_shm *shm;

/* POSIX objects behind the regions, made once (and unlinked at once: the mappings stay). */
static void make_regions(void)
{
    shm = yls_shm_new();
    CHECK(shm != NULL, "registry");
    char key[2][64];
    size_t size[2] = {64 * 1024, 256};
    for (int i = 0; i < 2; i++) {
        snprintf(key[i], sizeof key[i], "/yl-fuzz-%d-%d", (int)getpid(), i);
        int fd = shm_open(key[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
        CHECK(fd >= 0 && ftruncate(fd, (off_t)size[i]) == 0, "shm object");
        float *p = mmap(NULL, size[i], PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        CHECK(p != MAP_FAILED, "mmap");
        for (size_t k = 0; k < size[i] / 4; k++)
            p[k] = (float)((int)(k % 17) - 8) / 4.0f;
        munmap(p, size[i]);
        close(fd);
    }
    yls_fail f = {0};
    CHECK(yls_shm_register(shm, "r0", key[0], 0, 64 * 1024, &f) == 0, "%s", f.msg);
    CHECK(yls_shm_register(shm, "r1", key[0], 60 * 1024, 4096, &f) == 0, "%s", f.msg);
    CHECK(yls_shm_register(shm, "r2", key[1], 0, 256, &f) == 0, "%s", f.msg);
    shm_unlink(key[0]);
    shm_unlink(key[1]);
}

static void parse_body(const yls_model *m, const uint8_t *body, size_t len, int64_t header_len)
{
    yls_infer_input in;
    yls_fail f = {0};
    int rc = yls_infer_parse(&in, m, body, len, header_len, shm, &f);
    CHECK(rc == 0 || rc == -1, "rc %d", rc);
    if (getenv("YL_FUZZ_VERBOSE")) /* what a seed reaches: YL_FUZZ_VERBOSE=1 ... SEED */
        fprintf(stderr, "parse: %s\n", rc ? f.msg : "ok");
    if (rc) {
        check_fail(&f);
        yls_infer_input_free(&in);
        return;
    }
    CHECK(f.status == 0, "status %u on success", f.status);
    int L = in.num_layers;
    CHECK(L == 2 || L == 3, "L %d", L);
    CHECK(in.n_out >= 1 && in.n_out <= YLS_MAX_OUTPUTS, "n_out %d", in.n_out);
    for (int l = 0; l < L; l++) {
        if (!in.compact) {
            touch(&in.outputs[l]);
            continue;
        }
        touch(&in.cl[l].box);
        touch(&in.cl[l].rows);
        CHECK(in.cl[l].n == in.cl[l].rows.shape[0], "rows %lld", (long long)in.cl[l].n);
        touch_bytes(in.cl[l].index, (size_t)in.cl[l].n * 8);
    }
    for (int i = 0; i < in.n_out; i++)
        if (in.out[i].shm.region) {
            const yls_shm_place *at = &in.out[i].shm;
            CHECK(at->offset + at->size <= at->region->byte_size, "output window");
        }
    if (in.has_boxes)
        touch(&in.boxes);
    else
        for (int l = 0; l < L; l++)
            touch(&in.y_true[l]);
    yl_problem p;
    yl_error err;
    yl_compact_layer cl[YL_MAX_LAYERS];
    for (int l = 0; l < L; l++)
        cl[l] = (yl_compact_layer){in.cl[l].box, in.cl[l].rows, in.cl[l].index};
    int prc = in.compact ? yl_problem_init_compact(&p, &in.cfg, cl, L,
                                                   in.has_boxes ? &in.boxes : NULL,
                                                   in.has_boxes ? NULL : in.y_true,
                                                   in.has_boxes ? 0 : L, &err)
                         : yl_problem_init(&p, &in.cfg, in.outputs, L,
                                           in.has_boxes ? &in.boxes : NULL,
                                           in.has_boxes ? NULL : in.y_true, in.has_boxes ? 0 : L,
                                           &err);
    if (prc == YL_OK) {
        yls_fail fo = {0};
        if (yls_infer_check_shm_outputs(&in, &p, &fo) == 0) {
            /* every output placed in shared memory fits its window: write all of it */
            for (int i = 0; i < in.n_out; i++)
                if (in.out[i].shm.region) {
                    int nd;
                    int64_t sh[YL_MAX_DIMS];
                    size_t n;
                    yls_output_shape(&in, &p, i, &nd, sh, &n);
                    memset(yls_output_shm_ptr(&in.out[i]), 0, n * yls_output_esize(&in, i));
                }
        } else {
            check_fail(&fo);
        }
        size_t total = 0;
        for (int l = 0; l < L; l++)
            total += (size_t)(p.batch * p.layer_elems[l]);
        size_t es = in.grad_dtype == YL_F64 ? 8 : 4;
        if (total <= (1u << 16)) {
            yl_grads g = {.dtype = in.grad_dtype};
            for (int l = 0; l < L; l++) {
                size_t n = in.compact ? (size_t)(p.batch * p.anchors[l])
                                      : (size_t)(p.batch * p.layer_elems[l]);
                g.layer[l] = malloc(n * es + 1);
                if (in.compact)
                    g.rows[l] = malloc((size_t)in.cl[l].n * (size_t)(5 + p.num_classes) * es + 1);
            }
            yl_result r;
            yl_compute(&p, 1, &g, &r, NULL, &err);
            for (int l = 0; l < L; l++) {
                free(g.layer[l]);
                free(g.rows[l]);
            }
        }
    }
    yls_infer_input_free(&in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        char err[256];
        if (yls_models_init(&models, NULL, err, sizeof err))
            abort();
        make_regions();
        ready = 1;
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++, size--;
    int64_t header_len = -1;
    if ((mode & 8) && size >= 2) {
        header_len = (int64_t)((data[0] | data[1] << 8) % (size - 2 + 1));
        data += 2, size -= 2;
    }
    /* the body in its own allocation, so that reading past it is caught */
    uint8_t *body = malloc(size ? size : 1);
    memcpy(body, data, size);
    switch (mode & 3) {
    case 0:
    case 1:
        parse_body(yls_models_find(&models, mode & 1 ? "yolov3" : "yolov3-tiny",
                                   mode & 1 ? 6 : 11),
                   body, size, header_len);
        break;
    case 2: {
        uint8_t *base = NULL, *out = NULL;
        size_t out_len = 0;
        yls_fail f = {0};
        yls_encoding enc = mode & 4 ? YLS_ENC_DEFLATE : YLS_ENC_GZIP;
        if (yls_inflate(enc, body, size, 1 << 16, 7, &base, &out, &out_len, &f) == 0) {
            CHECK(out == base + 7 && out_len <= (1 << 16), "inflate bounds");
            parse_body(yls_models_find(&models, "yolov3", 6), out, out_len, header_len);
            yls_big_free(base);
        } else {
            check_fail(&f);
        }
        break;
    }
    case 3: {
        char *s = malloc(size + 1);
        memcpy(s, body, size);
        s[size] = '\0';
        yls_route route;
        yls_fail f = {0};
        static const char *const methods[] = {"GET", "POST", "DELETE", "HEAD"};
        if (yls_route_match(&fuzz_router, NULL, methods[(mode >> 2) & 3], s, &route, &f))
            check_fail(&f);
        else
            CHECK(route.entry != NULL && route.entry->method != NULL, "entry");
        yls_encoding e = yls_encoding_accept(s);
        CHECK(e == YLS_ENC_IDENTITY || e == YLS_ENC_GZIP || e == YLS_ENC_DEFLATE, "accept");
        yl_config cfg;
        yl_config_default(&cfg, 9);
        yls_fail fa = {0};
        if (yls_anchors_parse(&cfg, s, &fa))
            check_fail(&fa);
        else
            CHECK(cfg.num_anchors == 6 || cfg.num_anchors == 9, "anchors");
        free(s);
        break;
    }
    }
    free(body);
    return 0;
}
