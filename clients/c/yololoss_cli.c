/*
 * yololoss_cli.c: `yololoss`, the command-line client. Reads the raw head outputs and the
 * ground truth from .npy files, asks yololossd for the loss (and the gradient), prints the
 * answer as JSON on stdout and writes the gradients as .npy files.
 *
 * Exit status: 0 done, 1 the server refused or could not be reached (message on stderr,
 * with the HTTP status), 2 bad usage or an unreadable file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "npyfile.h"
#include "yololoss_client.h"

static const char usage[] =
    "usage: yololoss [options] OUTPUT_0.npy [OUTPUT_1.npy [OUTPUT_2.npy]]\n"
    "                (--boxes BOXES.npy | --y-true Y_TRUE_0.npy --y-true Y_TRUE_1.npy ...)\n"
    "Sends a batch to yololossd and prints the keras-yolo3 YOLOv3 loss as JSON: loss, terms\n"
    "(xy, wh, confidence, class), layer_terms, image_terms and darknet's stats per layer.\n"
    "\n"
    "  OUTPUT_l.npy         raw head output l, [B,H,W,3*(5+C)] or [B,H,W,3,5+C], float16,\n"
    "                       float32, float64, or uint16 holding bfloat16 bit patterns\n"
    "  --boxes FILE         ground truth [B,T,5] (float32/float64): x_min, y_min, x_max,\n"
    "                       y_max in pixels, class; rows of width <= 0 are padding\n"
    "  --y-true FILE        dense ground truth of the next layer (instead of --boxes)\n"
    "  --url URL            server (default $YOLOLOSS_URL or http://127.0.0.1:8000)\n"
    "  --model NAME         yolov3 (default, 3 layers) or yolov3-tiny (2 layers)\n"
    "  --token TOKEN        bearer token (default $YOLOLOSS_TOKEN)\n"
    "  --grads DIR          also get the gradient, written as DIR/grad_<l>.npy (float32)\n"
    "  --grad-dtype T       float32 (default) or float64: the gradient computed in double\n"
    "                       and never rounded, written as float64\n"
    "  --json               send JSON numbers instead of binary tensors\n"
    "  --ignore-thresh X    override the model's ignore_thresh (0.5)\n"
    "  --anchors W,H,...    override the model's anchors (12 or 18 numbers)\n"
    "  --run NAME           label for the server's monitoring\n"
    "  --step N             training step, for the server's monitoring\n"
    "  --timeout SECONDS    for the whole call, retries included (default 60)\n"
    "  --max-attempts N     attempts in all when the connection is refused or reset or the\n"
    "                       answer is 502/503/504 (default: as many as the timeout allows)\n"
    "  --no-retry           one attempt only (--max-attempts 1)\n"
    "  --tensors MODE       auto (default: compact when the server offers it), compact or\n"
    "                       dense; compact sends the 5 box channels of every anchor and\n"
    "                       the full rows of the truth anchors only (same results)\n"
    "  --transport MODE     auto (default: shared memory when the server is on this host\n"
    "                       and offers it, else the HTTP body), shm or wire\n"
    "  --help, --version\n"
    "Exit status: 0 done, 1 refused by the server or no answer, 2 bad usage or file.\n";

static int to_dtype(const npyf_array *a)
{
    switch (a->dtype) {
    case NPYF_F16: return YLC_F16;
    case NPYF_F32: return YLC_F32;
    case NPYF_F64: return YLC_F64;
    default: return YLC_BF16; /* <u2: bfloat16 bit patterns */
    }
}

static int load(const char *path, npyf_array *a, ylc_tensor *t)
{
    char err[600];
    if (npyf_read(path, a, err, sizeof err) != 0) {
        fprintf(stderr, "yololoss: %s\n", err);
        return -1;
    }
    if (a->ndim < 1) {
        fprintf(stderr, "yololoss: %s: a scalar is not a tensor\n", path);
        return -1;
    }
    memset(t, 0, sizeof *t);
    t->data = a->data;
    t->dtype = to_dtype(a);
    t->ndim = a->ndim;
    for (int d = 0; d < a->ndim; d++)
        t->shape[d] = a->shape[d];
    return 0;
}

static json_t *floats_json(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

static json_t *result_json(const ylc_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(r->model_name));
    json_object_set_new(o, "loss", json_real(r->loss));
    json_t *terms = json_object();
    for (int k = 0; k < 4; k++)
        json_object_set_new(terms, ylc_term_name(k), json_real(r->terms[k]));
    json_object_set_new(o, "terms", terms);
    json_t *lt = json_array();
    for (int l = 0; l < r->num_layers; l++)
        json_array_append_new(lt, floats_json(r->layer_terms[l], 4));
    json_object_set_new(o, "layer_terms", lt);
    json_t *it = json_array();
    for (int64_t b = 0; b < r->batch; b++) {
        double v[4];
        for (int k = 0; k < 4; k++)
            v[k] = r->image_terms[b * 4 + k];
        json_array_append_new(it, floats_json(v, 4));
    }
    json_object_set_new(o, "image_terms", it);
    json_t *st = json_array();
    for (int l = 0; l < r->num_layers; l++) {
        json_t *s = json_object();
        for (int k = 0; k < YLC_NUM_STATS; k++) {
            const char *name = ylc_stat_name(k);
            bool count = !strcmp(name, "count") || !strcmp(name, "ignored");
            json_object_set_new(s, name, count ? json_integer((json_int_t)r->stats[l][k])
                                               : json_real(r->stats[l][k]));
        }
        json_array_append_new(st, s);
    }
    json_object_set_new(o, "stats", st);
    return o;
}

static int write_grads(const char *dir, const ylc_result *r, json_t *out)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "yololoss: --grads %s: %s\n", dir, strerror(errno));
        return -1;
    }
    json_t *files = json_array();
    json_object_set_new(out, "grads", files);
    for (int l = 0; l < r->num_layers; l++) {
        if (!r->grads[l] && !r->grads_f64[l])
            continue;
        char path[4096], err[600];
        snprintf(path, sizeof path, "%s/grad_%d.npy", dir, l);
        const void *g = r->grads_f64[l] ? (const void *)r->grads_f64[l] : (const void *)r->grads[l];
        if (npyf_write(path, r->grads_f64[l] ? "<f8" : "<f4", r->grad_ndim[l], r->grad_shape[l],
                       g, err, sizeof err) != 0) {
            fprintf(stderr, "yololoss: %s\n", err);
            return -1;
        }
        json_array_append_new(files, json_string(path));
    }
    return 0;
}

static int parse_double(const char *flag, const char *s, double *out)
{
    char *e;
    errno = 0;
    *out = strtod(s, &e);
    if (errno || e == s || *e) {
        fprintf(stderr, "yololoss: %s: '%s' is not a number\n", flag, s);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    ylc_options opt = {.url = getenv("YOLOLOSS_URL"), .model = "yolov3",
                       .token = getenv("YOLOLOSS_TOKEN"), .timeout = 60};
    ylc_request req;
    memset(&req, 0, sizeof req);
    const char *out_paths[YLC_MAX_LAYERS], *yt_paths[YLC_MAX_LAYERS], *boxes_path = NULL;
    const char *grads_dir = NULL;
    int n_out = 0, n_yt = 0, status = 2;
    npyf_array arrays[2 * YLC_MAX_LAYERS + 1];
    int n_arrays = 0;
    ylc_tensor outs[YLC_MAX_LAYERS], yts[YLC_MAX_LAYERS], boxes;
    ylc_client *c = NULL;
    ylc_result r;
    memset(&r, 0, sizeof r);
    json_t *doc = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strncmp(a, "--", 2) == 0 && strcmp(a, "--json") && strcmp(a, "--help") &&
                     strcmp(a, "--version") && strcmp(a, "--no-retry");
        if (takes && !v) {
            fprintf(stderr, "yololoss: %s needs a value\n%s", a, usage);
            goto out;
        }
        if (!strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("yololoss %s (C client)\n", YLC_VERSION);
            return 0;
        } else if (!strcmp(a, "--json")) {
            req.json = 1;
            continue;
        } else if (!strcmp(a, "--no-retry")) {
            opt.max_attempts = 1;
            continue;
        } else if (!strcmp(a, "--url")) {
            opt.url = v;
        } else if (!strcmp(a, "--model")) {
            opt.model = v;
        } else if (!strcmp(a, "--token")) {
            opt.token = v;
        } else if (!strcmp(a, "--boxes")) {
            boxes_path = v;
        } else if (!strcmp(a, "--y-true")) {
            if (n_yt == YLC_MAX_LAYERS) {
                fprintf(stderr, "yololoss: at most %d --y-true files\n", YLC_MAX_LAYERS);
                goto out;
            }
            yt_paths[n_yt++] = v;
        } else if (!strcmp(a, "--grads")) {
            grads_dir = v;
            req.grads = 1;
        } else if (!strcmp(a, "--ignore-thresh")) {
            if (parse_double(a, v, &req.ignore_thresh))
                goto out;
            req.has_ignore_thresh = 1;
        } else if (!strcmp(a, "--anchors")) {
            req.anchors = v;
        } else if (!strcmp(a, "--run")) {
            req.run = v;
        } else if (!strcmp(a, "--step")) {
            char *e;
            errno = 0;
            req.step = strtoll(v, &e, 10);
            if (errno || e == v || *e) {
                fprintf(stderr, "yololoss: --step: '%s' is not an integer\n", v);
                goto out;
            }
            req.has_step = 1;
        } else if (!strcmp(a, "--timeout")) {
            if (parse_double(a, v, &opt.timeout))
                goto out;
        } else if (!strcmp(a, "--tensors") || !strcmp(a, "--transport") ||
                   !strcmp(a, "--grad-dtype")) {
            static const char *const modes[3][3] = {{"auto", "compact", "dense"},
                                                    {"auto", "shm", "wire"},
                                                    {"float32", "float64", NULL}};
            int which = a[2] == 'g' ? 2 : !strcmp(a, "--transport");
            int k = 0;
            while (k < 3 && !(modes[which][k] && !strcmp(v, modes[which][k])))
                k++;
            if (k == 3) {
                fprintf(stderr, "yololoss: %s: '%s' is not one of %s, %s%s%s\n", a, v,
                        modes[which][0], modes[which][1], modes[which][2] ? ", " : "",
                        modes[which][2] ? modes[which][2] : "");
                goto out;
            }
            if (which == 0)
                opt.tensors = k; /* YLC_TENSORS_AUTO, _COMPACT, _DENSE */
            else if (which == 1)
                opt.transport = k; /* YLC_TRANSPORT_AUTO, _SHM, _WIRE */
            else
                req.grad_datatype = k ? YLC_F64 : YLC_F32;
        } else if (!strcmp(a, "--max-attempts")) {
            char *e;
            errno = 0;
            long n = strtol(v, &e, 10);
            if (errno || e == v || *e || n < 1 || n > 1000000) {
                fprintf(stderr, "yololoss: --max-attempts: '%s' is not a count >= 1\n", v);
                goto out;
            }
            opt.max_attempts = (int)n;
        } else if (strncmp(a, "--", 2) == 0) {
            fprintf(stderr, "yololoss: unknown option %s\n%s", a, usage);
            goto out;
        } else {
            if (n_out == YLC_MAX_LAYERS) {
                fprintf(stderr, "yololoss: at most %d output files\n", YLC_MAX_LAYERS);
                goto out;
            }
            out_paths[n_out++] = a;
            continue;
        }
        i++;
    }
    if (n_out == 0 || (boxes_path != NULL) == (n_yt > 0)) {
        fprintf(stderr, "yololoss: give the output files and exactly one of --boxes and "
                        "--y-true\n%s", usage);
        goto out;
    }
    for (int l = 0; l < n_out; l++)
        if (load(out_paths[l], &arrays[n_arrays++], &outs[l]))
            goto out;
    if (boxes_path) {
        if (load(boxes_path, &arrays[n_arrays++], &boxes))
            goto out;
        req.boxes = &boxes;
    }
    for (int l = 0; l < n_yt; l++)
        if (load(yt_paths[l], &arrays[n_arrays++], &yts[l]))
            goto out;
    req.outputs = outs;
    req.n_outputs = n_out;
    req.y_true = n_yt ? yts : NULL;
    req.n_y_true = n_yt;

    ylc_error err;
    status = 1;
    if (ylc_client_new(&c, &opt, &err) != 0 || ylc_compute(c, &req, &r, &err) != 0) {
        if (err.status)
            fprintf(stderr, "yololoss: HTTP %d: %s\n", err.status, err.msg);
        else
            fprintf(stderr, "yololoss: %s\n", err.msg);
        goto out;
    }
    doc = result_json(&r);
    if (grads_dir && write_grads(grads_dir, &r, doc)) {
        status = 2;
        goto out;
    }
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(9) | JSON_PRESERVE_ORDER);
    if (!text) {
        fprintf(stderr, "yololoss: out of memory\n");
        goto out;
    }
    puts(text);
    free(text);
    status = fflush(stdout) == 0 ? 0 : 2;
out:
    json_decref(doc);
    ylc_result_free(&r);
    ylc_client_free(c);
    for (int i = 0; i < n_arrays; i++)
        npyf_free(&arrays[i]);
    return status;
}
