/* Batch results from per-image sums, always in image order, so any thread count and any
 * schedule give the same bits. */
#include <string.h>

#include "internal.h"

static double mean(double sum, int64_t n) { return n ? sum / (double)n : 0.0; }

void yl_reduce(const yl_problem *p, const yl_image_result *images, yl_result *r) {
    memset(r, 0, sizeof *r);
    r->num_layers = p->num_layers;
    double inv_m = yl__definition_mean(p->cfg.definition)
                       ? 1.0 / (double)p->batch
                       : 1.0;
    for (int l = 0; l < p->num_layers; l++) {
        yl_layer_sums t;
        memset(&t, 0, sizeof t);
        for (int64_t b = 0; b < p->batch; b++) {
            const yl_layer_sums *s = &images[b].layer[l];
            for (int q = 0; q < 4; q++)
                t.terms[q] += s->terms[q];
            t.count += s->count;
            t.sum_iou += s->sum_iou;
            t.sum_class += s->sum_class;
            t.n_class += s->n_class;
            t.sum_obj += s->sum_obj;
            t.sum_noobj += s->sum_noobj;
            t.n_noobj += s->n_noobj;
            t.n_recall50 += s->n_recall50;
            t.n_recall75 += s->n_recall75;
            t.ignored += s->ignored;
            t.cost += s->cost;
        }
        for (int q = 0; q < 4; q++) {
            r->layer_terms[l][q] = t.terms[q] * inv_m;
            r->terms[q] += r->layer_terms[l][q];
        }
        double *st = r->stats[l];
        st[YL_STAT_COUNT] = (double)t.count;
        st[YL_STAT_AVG_IOU] = mean(t.sum_iou, t.count);
        st[YL_STAT_AVG_CLASS] = mean(t.sum_class, t.n_class);
        st[YL_STAT_AVG_OBJ] = mean(t.sum_obj, t.count);
        st[YL_STAT_AVG_NOOBJ] = mean(t.sum_noobj, t.n_noobj);
        st[YL_STAT_RECALL50] = mean((double)t.n_recall50, t.count);
        st[YL_STAT_RECALL75] = mean((double)t.n_recall75, t.count);
        st[YL_STAT_IGNORED] = (double)t.ignored;
        r->cost[l] = t.cost;
    }
    r->loss = r->terms[0] + r->terms[1] + r->terms[2] + r->terms[3];
}

void yl_image_terms(const yl_image_result *img, double out[4]) {
    for (int q = 0; q < 4; q++) {
        out[q] = 0;
        for (int l = 0; l < img->num_layers; l++)
            out[q] += img->layer[l].terms[q];
    }
}
