/*
 * models.c: the model table. Built in: yolov3 (9 anchors, 3 layers) and yolov3-tiny (6
 * anchors, 2 layers), both version "1" with ignore_thresh 0.5. More come from a JSON file
 * given with --models (docs/server.md):
 *
 *     [{"name": "my-yolo", "anchors": "12,16,19,36,40,28,36,75,76,55,72,146,142,110,192,243,459,401",
 *       "ignore_thresh": 0.6},
 *      {"name": "my-tiny", "anchors": [10,14,23,27,37,58,81,82,135,169,344,319]}]
 *
 * anchors: 12 or 18 numbers (w,h pairs in input pixels) as a string or an array;
 * ignore_thresh: optional, default 0.5. Names: letters, digits, '.', '_', '-'.
 * Built in too: the evaluation models coco-bbox, voc07 and voc (v2/eval.c, docs/protocol.md).
 */
#include "server.h"
#include "yleval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

int yls_anchors_parse(yl_config *cfg, const char *s, yls_fail *f)
{
    double v[18];
    int n = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno == ERANGE)
            return yls_fail_set(f, 400,
                                "anchors \"%.80s\": item %d is not a number (want \"w,h,w,h,...\" "
                                "with 12 or 18 numbers)",
                                s, n + 1);
        if (!isfinite(x) || x <= 0)
            return yls_fail_set(f, 400, "anchors \"%.80s\": item %d (%g) is not a positive number",
                                s, n + 1, x);
        if (n == 18)
            return yls_fail_set(f, 400, "anchors \"%.80s\": more than 18 numbers", s);
        v[n++] = x;
        p = end;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        if (*p != ',')
            return yls_fail_set(f, 400, "anchors \"%.80s\": expected ',' after item %d", s, n);
        p++;
    }
    if (n != 12 && n != 18)
        return yls_fail_set(f, 400,
                            "anchors \"%.80s\": %d numbers; want 12 (tiny, 2 layers) or 18 (3 "
                            "layers)",
                            s, n);
    cfg->num_anchors = n / 2;
    memcpy(cfg->anchors, v, (size_t)n * sizeof v[0]);
    return 0;
}

void yls_anchors_format(const yl_config *cfg, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < 2 * cfg->num_anchors && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%.17g", i ? "," : "", cfg->anchors[i]);
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= YLS_MODEL_NAME_MAX || !strcmp(s, "stats") || !strcmp(s, ".") ||
        !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int add_model(yls_models *m, const char *name, const yl_config *cfg)
{
    yls_model *v = realloc(m->v, (m->n + 1) * sizeof *v);
    if (!v)
        return -1;
    m->v = v;
    yls_model *x = &m->v[m->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->cfg = *cfg;
    /* keras-yolo3's layers follow from its anchor count (a models file may give 12) */
    x->num_layers = cfg->definition == YL_DEF_KERAS ? cfg->num_anchors / YL_NUM_ANCHORS_PER_LAYER
                                                    : cfg->num_layers;
    x->eval = -1;
    return 0;
}

static int load_file(yls_models *m, const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_array(root)) {
        snprintf(err, errlen, "%s: want a JSON array of {\"name\", \"anchors\", \"ignore_thresh\"}",
                 path);
        goto out;
    }
    size_t i;
    json_t *o;
    json_array_foreach(root, i, o) {
        const char *name = json_string_value(json_object_get(o, "name"));
        json_t *anchors = json_object_get(o, "anchors");
        json_t *thresh = json_object_get(o, "ignore_thresh");
        if (!json_is_object(o) || !name || !anchors) {
            snprintf(err, errlen, "%s: model %zu needs \"name\" and \"anchors\"", path, i);
            goto out;
        }
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v) {
            if (strcmp(key, "name") && strcmp(key, "anchors") && strcmp(key, "ignore_thresh")) {
                snprintf(err, errlen, "%s: model '%s': unknown key '%s'", path, name, key);
                goto out;
            }
        }
        if (!valid_name(name)) {
            snprintf(err, errlen,
                     "%s: model name '%s' must be 1-%d letters, digits, '.', '_' or '-' (and not "
                     "'stats')",
                     path, name, YLS_MODEL_NAME_MAX - 1);
            goto out;
        }
        if (yls_models_find(m, name, strlen(name))) {
            snprintf(err, errlen, "%s: model '%s' is defined twice", path, name);
            goto out;
        }
        yl_config cfg;
        yl_config_default(&cfg, 9);
        yls_fail f = {0};
        if (json_is_string(anchors)) {
            if (yls_anchors_parse(&cfg, json_string_value(anchors), &f)) {
                snprintf(err, errlen, "%s: model '%s': %s", path, name, f.msg);
                goto out;
            }
        } else if (json_is_array(anchors) &&
                   (json_array_size(anchors) == 12 || json_array_size(anchors) == 18)) {
            size_t k;
            json_t *a;
            json_array_foreach(anchors, k, a) {
                double x = json_number_value(a);
                if (!json_is_number(a) || !(x > 0)) {
                    snprintf(err, errlen, "%s: model '%s': anchors[%zu] is not a positive number",
                             path, name, k);
                    goto out;
                }
                cfg.anchors[k] = x;
            }
            cfg.num_anchors = (int)json_array_size(anchors) / 2;
        } else {
            snprintf(err, errlen, "%s: model '%s': anchors must be 12 or 18 numbers", path, name);
            goto out;
        }
        if (thresh) {
            double t = json_number_value(thresh);
            if (!json_is_number(thresh) || !isfinite(t)) {
                snprintf(err, errlen, "%s: model '%s': ignore_thresh must be a number", path,
                         name);
                goto out;
            }
            cfg.ignore_thresh = t;
        }
        if (add_model(m, name, &cfg)) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int yls_models_init(yls_models *m, const char *path, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    yl_config cfg;
    yl_config_default(&cfg, 9);
    if (add_model(m, "yolov3", &cfg))
        goto oom;
    yl_config_default(&cfg, 6);
    if (add_model(m, "yolov3-tiny", &cfg))
        goto oom;
    /* darknet's [yolo] loss: cfg/yolov3.cfg and cfg/yolov3-tiny.cfg */
    yl_config_model(&cfg, YL_DEF_DARKNET, 9);
    if (add_model(m, "yolov3-darknet", &cfg))
        goto oom;
    yl_config_model(&cfg, YL_DEF_DARKNET, 6);
    if (add_model(m, "yolov3-tiny-darknet", &cfg))
        goto oom;
    yl_config_default(&cfg, 9);
    /* the evaluation models: one per convention of the core's table */
    static const char *const eval_models[YLE_N_CONVENTIONS] = {"coco-bbox", "voc07", "voc"};
    for (int c = 0; c < YLE_N_CONVENTIONS; c++) {
        if (add_model(m, eval_models[c], &cfg))
            goto oom;
        m->v[m->n - 1].eval = c;
    }
    if (path && load_file(m, path, err, errlen)) {
        yls_models_free(m);
        return -1;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    yls_models_free(m);
    return -1;
}

void yls_models_free(yls_models *m)
{
    free(m->v);
    m->v = NULL;
    m->n = 0;
}

yls_model *yls_models_find(const yls_models *m, const char *name, size_t len)
{
    for (size_t i = 0; i < m->n; i++)
        if (strlen(m->v[i].name) == len && !memcmp(m->v[i].name, name, len))
            return &m->v[i];
    return NULL;
}
