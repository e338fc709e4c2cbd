/* darknet_shim.c: glue that calls the real darknet's forward_yolo_layer (pjreddie/darknet,
 * built from a fetched checkout by tests/python/test_darknet_real.py; darknet's code is
 * never committed here) on given inputs, for the optional comparison with the core.
 *
 *     gcc -shared -fPIC -I$DARKNET/include -I$DARKNET/src darknet_shim.c $DARKNET/src/...c
 */
#include <stdlib.h>
#include <string.h>

#include "darknet.h"
#include "yolo_layer.h"

int yl_dk_forward(int batch, int w, int h, int n, int total, const int *mask, int classes,
                  const float *biases, float ignore_thresh, float truth_thresh, int max_boxes,
                  int net_w, int net_h, const float *input, const float *truth, float *delta,
                  float *cost);

/* input: darknet's layout (batch, n*(5+classes), h, w); truth: (batch, 90*5), darknet's
 * fixed truth stride; delta: as input. Returns 0. */
int yl_dk_forward(int batch, int w, int h, int n, int total, const int *mask, int classes,
                  const float *biases, float ignore_thresh, float truth_thresh, int max_boxes,
                  int net_w, int net_h, const float *input, const float *truth, float *delta,
                  float *cost)
{
    int *m = calloc((size_t)n, sizeof *m);
    memcpy(m, mask, (size_t)n * sizeof *m);
    layer l = make_yolo_layer(batch, w, h, n, total, m, classes);
    memcpy(l.biases, biases, (size_t)(2 * total) * sizeof(float));
    l.ignore_thresh = ignore_thresh;
    l.truth_thresh = truth_thresh;
    l.max_boxes = max_boxes;
    network net;
    memset(&net, 0, sizeof net);
    net.input = (float *)input;
    net.truth = (float *)truth;
    net.train = 1;
    net.w = net_w;
    net.h = net_h;
    forward_yolo_layer(l, net);
    memcpy(delta, l.delta, (size_t)(batch * l.outputs) * sizeof(float));
    *cost = *l.cost;
    free(l.delta);
    free(l.output);
    free(l.biases);
    free(l.bias_updates);
    free(l.cost);
    free(m);
    return 0;
}
