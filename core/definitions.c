/* The loss definitions (YL_DEFINITION_MAP in yololoss.h): one row each, its functions, and
 * yl_image, which runs the problem's row. Adding a definition = one row here + its file. */
#include <string.h>

#include "internal.h"

static int keras_defaults(yl_config *cfg, int num_anchors) {
    return yl_config_default(cfg, num_anchors);
}

static const yl__definition rows[YL_NUM_DEFINITIONS] = {
    [YL_DEF_KERAS] = {.defaults = keras_defaults,
                      .config = yl__keras_config,
                      .truth = yl__keras_truth,
                      .scratch_bytes = yl__scratch_bytes,
                      .image = yl__keras_image},
    [YL_DEF_DARKNET] = {.defaults = yl__darknet_default,
                        .config = yl__darknet_config,
                        .truth = yl__darknet_truth,
                        .scratch_bytes = yl__darknet_scratch_bytes,
                        .image = yl__darknet_image},
};

/* names, sources and the mean flag, from the one map */
static const struct {
    const char *name, *source;
    int mean;
} texts[YL_NUM_DEFINITIONS] = {
#define YL__DEF_TEXT(id, wire, src, m) [YL_DEF_##id] = {wire, src, m},
    YL_DEFINITION_MAP(YL__DEF_TEXT)
#undef YL__DEF_TEXT
};

const yl__definition *yl__definition_of(int definition) {
    return definition >= 0 && definition < YL_NUM_DEFINITIONS ? &rows[definition] : NULL;
}

int yl__definition_mean(int definition) {
    return definition >= 0 && definition < YL_NUM_DEFINITIONS ? texts[definition].mean : 1;
}

const char *yl_definition_name(int definition) {
    return definition >= 0 && definition < YL_NUM_DEFINITIONS ? texts[definition].name : NULL;
}

const char *yl_definition_source(int definition) {
    return definition >= 0 && definition < YL_NUM_DEFINITIONS ? texts[definition].source : NULL;
}

int yl_definition_from_name(const char *name) {
    for (int d = 0; name && d < YL_NUM_DEFINITIONS; d++)
        if (strcmp(name, texts[d].name) == 0)
            return d;
    return -1;
}

int yl_config_model(yl_config *cfg, int definition, int num_anchors) {
    if (!cfg || definition < 0 || definition >= YL_NUM_DEFINITIONS)
        return YL_EINVAL;
    return rows[definition].defaults(cfg, num_anchors);
}

int yl_image(const yl_problem *p, int64_t b, void *scratch, const yl_grads *grads,
             yl_image_result *out, yl_error *err) {
    const yl__definition *def = p ? yl__definition_of(p->cfg.definition) : NULL;
    if (!def)
        return yl__fail(err, YL_EINVAL, "", b, -1,
                        "yl_image: problem is required (and must have a known definition)");
    return def->image(p, b, scratch, grads, out, err);
}
