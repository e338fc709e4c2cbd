/*
 * coco_json.h: COCO-format JSON read into the evaluator's arrays (core/yleval.h), for the
 * yololoss-eval command. Truths: an instances file ({"images", "annotations",
 * "categories"}); detections: a results file (a list of {"image_id", "category_id", "bbox",
 * "score"}), as pycocotools' COCO() and COCO.loadRes read them.
 *
 * What a file may leave out, and what it gets (docs/metrics.md): a truth's "area" is
 * width * height, "iscrowd" and "difficult" are 0, "id" is its position + 1; an annotation's
 * "ignore" is never read (pycocotools overwrites it with "iscrowd"). Refused, with a message
 * naming the file's array and index: a missing or non-numeric field, a bbox that is not 4
 * numbers, a result whose image is not among the images or whose category is not among the
 * categories, a duplicate image or category id.
 *
 * The caller owns the set; ycj_free releases what the loaders allocated.
 */
#ifndef YCJ_COCO_JSON_H
#define YCJ_COCO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "yleval.h"

typedef struct {
    int64_t *img_ids; /* the images' ids, sorted, unique */
    int64_t n_img;
    int64_t *cat_ids; /* the categories' ids, sorted, unique */
    int64_t n_cat;
    char **cat_names; /* the name of cat_ids[k] ("" where none) */
    yle_truth *gt;    /* in file order; box is x, y, w, h */
    int64_t *gt_img;  /* image id of each */
    int64_t n_gt;
    yle_det *dt;      /* in file order */
    int64_t *dt_img;
    int64_t n_dt;
} ycj_set;

/* Read an instances file's text (len bytes). Returns 0, or -1 with the message in err. */
int ycj_load_gt(const char *text, size_t len, ycj_set *s, char *err, size_t errlen);
/* Read a results file's text into s (after ycj_load_gt). */
int ycj_load_dt(const char *text, size_t len, ycj_set *s, char *err, size_t errlen);
void ycj_free(ycj_set *s);
/* Sort v[0..n) and drop repeats (np.unique); returns the count left. */
int64_t ycj_sort_unique(int64_t *v, int64_t n);

#endif
