/*
 * infer.c: one infer request as work on the libuv pool, in three phases.
 *
 *   input   (1 work item)   inflate, parse JSON + binary into tensors, yl_problem_init,
 *                           allocate per-image results and gradients; then the same thread
 *                           goes on into the images as their first chunk (the "lead"), and
 *                           a message asks the loop to queue the others beside it (a thread
 *                           that went idle between parse and images, to be woken again by
 *                           the loop, cost up to milliseconds: http/pool.c);
 *   images  (chunks)        at most --threads work items per request ("chunks"), each with
 *                           its own scratch, taking the next image from a shared counter
 *                           (yl_compute's schedule) until none is left; a chunk steps aside
 *                           after its current image when other work waits for the pool
 *                           (http/pool.c), and is queued again behind it, so the images of
 *                           concurrent requests interleave and a large batch does not
 *                           starve a small one, while a lone request runs without a hop
 *                           through the loop between its images;
 *   output  (1 work item)   yl_reduce (image order: the bytes do not depend on the thread
 *                           count or the schedule), then the response body, iovecs pointing
 *                           at the gradients, compressed if asked; a small answer is made on
 *                           the loop thread instead (all_done).
 *
 * The connection stays suspended from the end of the body to the response. The work callbacks
 * touch only their yls_infer (the problem is read-only, each chunk writes its own images'
 * results and gradient slices); all bookkeeping happens in the after-work callbacks, on the
 * loop thread. When images fail, the error reported is that of the lowest failing image:
 * images are taken in increasing order, so every image below a failing one has been taken
 * and is finished, and no image above the lowest failure seen so far is started.
 */
#include "infer.h"
#include "shm.h"

#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

typedef struct chunk {
    yls_work work;
    yls_infer *job;
    struct chunk *next, **prevp;
    int64_t done;   /* images started */
    int64_t fail_b; /* -1: none failed */
    yl_error err;
    bool nomem, over_budget;
    uint64_t t0, t1;
} chunk;

struct yls_infer {
    yls_work work; /* the input and the output phase */
    yls_request *req;
    yls_server *srv;
    const yls_model *model;

    /* the request body, taken over from the request */
    yls_body body;
    int64_t header_len;
    yls_encoding encoding, accept;
    uint64_t inflate_limit;
    uint64_t reserve; /* memory budget reserved at admission, for the input phase */

    /* input phase */
    yls_infer_input in;
    bool problem_ok;
    yl_problem prob;
    yls_grad_buf grads[YLS_GRAD_KINDS][YL_MAX_LAYERS]; /* [yls_grad_kind][layer] */
    bool any_grads;
    yl_image_result *images;
    yl_decode_config decode;  /* parameter eval */
    void **eval_blob;         /* [B] each image's records (yls_eval_image), or NULL */
    size_t *eval_len;

    /* image phase */
    atomic_llong next_image; /* the next image a chunk takes */
    atomic_llong fail_min;   /* the lowest failing image so far; INT64_MAX: none */
    atomic_int own_waiting;  /* this request's chunks queued, not started */
    int64_t running;         /* chunks queued or running, the lead included */
    chunk lead;              /* the input phase's thread, going on into the images */
    yls_loop_msg ready;      /* from the lead: queue its helpers */
    atomic_bool helpers_queued; /* on_ready has run */
    struct chunk *queued;    /* the chunks queued or running, for uv_cancel */
    int64_t images_done;

    /* the client left (yls_request on_gone): no more work, no answer */
    bool gone;
    atomic_bool stop; /* read by the chunks between images */
    bool replying;    /* the answer is made (or waits on the history): too late to stop */
    int64_t fail_image; /* lowest failing image, -1: none */
    yl_error fail_err;
    bool fail_nomem, fail_budget;
    yl_result result;

    /* outcome */
    struct counted_payload *payload;
    yls_fail fail;

    /* timing, uv_hrtime() */
    uint64_t t_ready, t_input0, t_input1;
    uint64_t t_chunks_queued, t_infer0, t_infer1;
    uint64_t t_output_queued, t_output0, t_output1;
};

/* Give back the request's shared-memory regions once nothing reads or writes them any more
 * (before the answer goes out: a client that unregisters a region after its answer finds it
 * unmapped, not held by a request that is still being sent). */
static void release_shm(yls_infer *job)
{
    for (int i = 0; i < job->in.n_held; i++)
        yls_shm_release(job->in.shm, job->in.held[i]);
    job->in.n_held = 0;
}

static void finish_fail(yls_infer *job)
{
    job->replying = true;
    release_shm(job);
    yls_reply_fail(job->req, &job->fail);
}

/* Nothing of job runs any more and its client left: count it and close the connection. */
static void finish_gone(yls_infer *job)
{
    yls_server *s = job->srv;
    s->gone_requests++;
    if (job->prob.batch > job->images_done)
        s->gone_images += (uint64_t)(job->prob.batch - job->images_done);
    job->replying = true;
    release_shm(job);
    yls_request_abandon(job->req);
}

/* The client of job left (its socket closed while the request was suspended): queued chunks
 * are cancelled, running ones stop at their next image, and the phase that ends last
 * closes the connection (finish_gone) instead of answering. */
static void on_gone(yls_request *r)
{
    yls_infer *job = r->work;
    if (!job || job->replying)
        return;
    job->gone = true;
    atomic_store(&job->stop, true);
    for (struct chunk *c = job->queued; c; c = c->next)
        yls_pool_cancel(&c->work); /* 0 for those not started: chunk_done(UV_ECANCELED) */
}

/* --------------------------------------------------------------------------------------- */
/* Output phase                                                                              */

/* A response body and the bytes of it counted in the memory budget (its JSON text and
 * compressed body; the gradients are bufcache blocks, counted there). */
typedef struct counted_payload {
    yls_payload p;
    uint64_t charged;
} counted_payload;

static void payload_free_cb(void *cls)
{
    counted_payload *cp = cls;
    yls_payload_free(&cp->p);
    yls_budget_give(cp->charged);
    free(cp);
}

/* Upper bound of the JSON text of the response: "%.9g" of an FP32 takes at most 15
 * characters, 16 with its comma ("%.17g" of an FP64 gradient 25); plus names, shapes and
 * parameters. */
static uint64_t json_bound(const yls_infer *job)
{
    uint64_t values = 0, grad_values = 0;
    for (int i = 0; i < job->in.n_out; i++) {
        const yls_output_req *o = &job->in.out[i];
        if (o->binary || o->shm.region)
            continue;
        int ndim;
        int64_t shape[YL_MAX_DIMS];
        size_t n;
        yls_output_shape(&job->in, &job->prob, i, &ndim, shape, &n);
        if (yls_outputs[o->kind].grad == YLS_GRAD_NONE)
            values += n;
        else
            grad_values += n;
    }
    return values * 16 + grad_values * (job->in.grad_dtype == YL_F64 ? 25 : 16) + 4096;
}

static void output_work(yls_work *w)
{
    yls_infer *job = container_of(w, yls_infer, work);
    job->t_output0 = uv_hrtime();
    yls_budget_hit();
    uint64_t bound = json_bound(job);
    counted_payload *cp = calloc(1, sizeof *cp);
    if (!cp) {
        yls_fail_set(&job->fail, 503, "out of memory for the response; retry later");
    } else if (!yls_budget_take(bound)) {
        yls_budget_fail(&job->fail, "the response");
        free(cp);
    } else if (yls_infer_respond(&cp->p, &job->in, job->model->name, &job->prob, &job->result,
                                 job->images, job->grads, job->accept, &job->fail)) {
        yls_budget_give(bound);
        yls_payload_free(&cp->p);
        free(cp);
    } else {
        /* count what it holds: the JSON, and the compressed copy of everything */
        uint64_t held = cp->p.json_len + (cp->p.packed ? cp->p.total : 0);
        if (held > bound)
            yls_budget_force(held - bound);
        else
            yls_budget_give(bound - held);
        cp->charged = held;
        job->payload = cp;
    }
    job->t_output1 = uv_hrtime();
}

static void output_done(yls_work *w, int status)
{
    (void)status;
    yls_infer *job = container_of(w, yls_infer, work);
    if (job->gone) {
        finish_gone(job);
        return;
    }
    if (job->fail.status) {
        finish_fail(job);
        return;
    }
    release_shm(job); /* outputs in shared memory are written; the body holds none of it */
    counted_payload *cp = job->payload;
    yls_payload *p = &cp->p;
    struct MHD_Response *resp =
        MHD_create_response_from_iovec(p->iov, (unsigned)p->niov, payload_free_cb, cp);
    if (!resp) {
        yls_fail_set(&job->fail, 500, "cannot create the response");
        finish_fail(job);
        return;
    }
    job->payload = NULL; /* the response owns it now */
    job->replying = true;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            p->binary ? "application/octet-stream" : "application/json");
    if (p->binary) {
        char n[32];
        snprintf(n, sizeof n, "%zu", p->json_len);
        MHD_add_response_header(resp, "Inference-Header-Content-Length", n);
    }
    if (p->enc != YLS_ENC_IDENTITY)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING,
                                yls_encoding_name(p->enc));
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    struct yls_point_src src = {&job->result, job->prob.batch, job->images, job->in.image_ids,
                                job->eval_blob, job->eval_len, job->prob.num_classes};
    if (!yls_record_reply(job->req, &src, resp, p->total)) /* else sent after the commit */
        yls_reply(job->req, 200, resp, p->total);
}

/* --------------------------------------------------------------------------------------- */
/* Image phase                                                                               */

/* Other work waits for the pool: this request's own chunks not counted. Both counters are
 * changed own first on queueing and own last on starting, so the difference may miss an
 * item for a moment (one more image before stepping aside) but never counts one too many. */
static bool others_waiting(const yls_infer *job)
{
    int own = atomic_load_explicit(&job->own_waiting, memory_order_relaxed);
    return (int64_t)yls_pool_waiting(job->srv) - own > 0;
}

/* The lowest failing image so far, lowered to b. */
static void lower_fail_min(yls_infer *job, int64_t b)
{
    long long cur = atomic_load(&job->fail_min);
    while (b < cur && !atomic_compare_exchange_weak(&job->fail_min, &cur, b))
        ;
}

/* What parameter eval needs: a run, boxes, dense outputs, image ids. 0, or -1 with f. */
static int eval_check(yls_infer *job, yls_fail *f)
{
    yls_infer_input *in = &job->in;
    if (!in->run[0])
        return yls_fail_set(f, 400, "parameter eval needs parameter run (the evaluation is "
                                    "stored per run and step)");
    if (!in->has_step)
        return yls_fail_set(f, 400, "parameter eval needs parameter step (the batches of one "
                                    "step add up to its evaluation)");
    if (!job->srv->history)
        return yls_fail_set(f, 400, "parameter eval needs a history to keep the records in "
                                    "(this daemon runs with --history none)");
    if (!in->has_boxes)
        return yls_fail_set(f, 400, "parameter eval needs the truths as input 'boxes' (not "
                                    "y_true_l)");
    if (!in->image_ids && !in->has_image_offset)
        return yls_fail_set(f, 400, "parameter eval needs the images' ids: input or parameter "
                                    "image_ids, or parameter image_offset (ids offset + b)");
    if (!in->image_ids) { /* ids image_offset + b: the batch's image rows get them too */
        in->image_ids = malloc((size_t)job->prob.batch * sizeof *in->image_ids);
        if (!in->image_ids)
            return yls_fail_set(f, 503, "out of memory for the image ids; retry later");
        in->n_image_ids = job->prob.batch;
        for (int64_t b = 0; b < job->prob.batch; b++)
            in->image_ids[b] = in->image_offset + b;
    }
    yl_error err;
    yl_decode_config_default(&job->decode);
    if (yl_decode_check(&job->prob, &job->decode, &err) != YL_OK)
        return yls_fail_set(f, 400, "parameter eval: %s", err.msg);
    return 0;
}

/* The images chunk c takes, on a pool thread (chunk_work, or the lead in input_work). */
static void run_images(yls_infer *job, chunk *c)
{
    c->t0 = uv_hrtime();
    yls_budget_hit();
    void *scratch = yls_big_alloc(yl_scratch_size(&job->prob));
    /* dense: grad_l; compact: grad_l_obj and grad_l_rows */
    yl_grads g = {.dtype = job->in.grad_dtype};
    for (int l = 0; l < job->prob.num_layers; l++) {
        g.layer[l] = job->grads[job->in.compact ? YLS_GRAD_OBJ : YLS_GRAD_DENSE][l].p;
        g.rows[l] = job->grads[YLS_GRAD_ROWS][l].p;
    }
    const yl_grads *grads = job->any_grads ? &g : NULL;
    for (;;) {
        if (atomic_load_explicit(&job->stop, memory_order_relaxed))
            break; /* the client left */
        if (c->done && others_waiting(job))
            break; /* step aside; chunk_done queues this chunk's successor behind them */
        int64_t b = atomic_fetch_add(&job->next_image, 1);
        if (b >= job->prob.batch || b > atomic_load(&job->fail_min))
            break; /* none left, or cannot change the reported error */
        c->done++;
        if (!scratch) {
            c->nomem = true; /* reported as image b's */
            c->over_budget = yls_budget_hit();
        } else if (yl_image(&job->prob, b, scratch, grads, &job->images[b], &c->err) == YL_OK) {
            if (!job->in.eval)
                continue;
            int e = yls_eval_image(&job->prob, b, &job->decode, job->in.image_ids[b],
                                   &job->eval_blob[b], &job->eval_len[b], &c->err);
            if (e == 0)
                continue;
            if (e == -2) {
                c->nomem = true;
                c->over_budget = yls_budget_hit();
            }
        }
        c->fail_b = b;
        lower_fail_min(job, b);
        break;
    }
    yls_big_free(scratch);
    c->t1 = uv_hrtime();
}

static void chunk_work(yls_work *w)
{
    chunk *c = container_of(w, chunk, work);
    atomic_fetch_sub_explicit(&c->job->own_waiting, 1, memory_order_relaxed);
    run_images(c->job, c);
}

static void chunk_done(yls_work *w, int status);

/* The largest JSON text (bound) of an answer made on the loop thread. */
#define SMALL_ANSWER (64 * 1024)

static void all_done(yls_infer *job)
{
    if (job->gone) {
        finish_gone(job);
        return;
    }
    if (job->fail_image >= 0) {
        if (job->fail_budget)
            yls_budget_fail(&job->fail, "the scratch memory of a chunk of images");
        else if (job->fail_nomem)
            yls_fail_set(&job->fail, 503, "out of memory computing image %" PRId64 "; retry later",
                         job->fail_image);
        else
            yls_fail_set(&job->fail, job->fail_err.code == YL_ENOMEM ? 500 : 400, "%s",
                         job->fail_err.msg);
        finish_fail(job);
        return;
    }
    yl_reduce(&job->prob, job->images, &job->result);
    /* the inputs are no longer needed (but for the row indices that scatter a compact
     * layer's dense gradient): give their memory back before the output */
    bool scatter = false;
    for (int l = 0; l < job->in.num_layers; l++)
        scatter |= job->in.compact && job->in.want_grad[YLS_GRAD_DENSE][l];
    if (!scatter) {
        yls_big_free(job->body.base);
        memset(&job->body, 0, sizeof job->body);
        for (int i = 0; i < job->in.n_owned; i++)
            yls_big_free(job->in.owned[i]);
        job->in.n_owned = 0;
    }
    job->t_output_queued = uv_hrtime();
    if (!scatter && job->accept == YLS_ENC_IDENTITY && json_bound(job) <= SMALL_ANSWER) {
        /* a small answer (the loss and statistics; gradients binary, in shared memory or
         * none) is made here, on the loop thread: it takes microseconds, and the pool's
         * round trip two thread wake-ups */
        output_work(&job->work);
        output_done(&job->work, 0);
        return;
    }
    yls_pool_queue(job->srv, &job->work, output_work, output_done);
}

/* Images not taken yet that can still change the answer. */
static bool images_left(yls_infer *job)
{
    int64_t next = atomic_load(&job->next_image);
    return next < job->prob.batch && next <= atomic_load(&job->fail_min);
}

/* Keep up to --threads chunks (at most one per image) queued or running while images are
 * left; finish when none runs any more. */
static void schedule(yls_infer *job)
{
    int64_t most = (int64_t)job->srv->opt.threads;
    if (most > job->prob.batch)
        most = job->prob.batch;
    while (!job->gone && job->running < most && images_left(job)) {
        chunk *c = calloc(1, sizeof *c);
        if (!c) {
            if (job->running)
                break; /* those running take the rest */
            /* none can be made: a 503 naming the next image (below any failure so far, as
             * images_left said) */
            int64_t b = atomic_fetch_add(&job->next_image, 1);
            lower_fail_min(job, b);
            job->fail_image = b;
            job->fail_nomem = true;
            job->fail_budget = false;
            break;
        }
        c->job = job;
        c->fail_b = -1;
        job->running++;
        c->next = job->queued;
        if (c->next)
            c->next->prevp = &c->next;
        c->prevp = &job->queued;
        job->queued = c;
        atomic_fetch_add_explicit(&job->own_waiting, 1, memory_order_relaxed);
        yls_pool_queue(job->srv, &c->work, chunk_work, chunk_done);
    }
    if (job->running == 0)
        all_done(job);
}

/* What chunk c did, into its job (loop thread). */
static void chunk_merge(yls_infer *job, const chunk *c)
{
    job->images_done += c->done;
    if (!job->t_infer0 || c->t0 < job->t_infer0)
        job->t_infer0 = c->t0;
    if (c->t1 > job->t_infer1)
        job->t_infer1 = c->t1;
    if (c->fail_b >= 0 && (job->fail_image < 0 || c->fail_b < job->fail_image)) {
        job->fail_image = c->fail_b;
        job->fail_err = c->err;
        job->fail_nomem = c->nomem;
        job->fail_budget = c->over_budget;
    }
}

static void chunk_done(yls_work *w, int status)
{
    chunk *c = container_of(w, chunk, work);
    yls_infer *job = c->job;
    job->running--;
    *c->prevp = c->next;
    if (c->next)
        c->next->prevp = c->prevp;
    if (status == UV_ECANCELED) {
        atomic_fetch_sub_explicit(&job->own_waiting, 1, memory_order_relaxed);
        free(c);
        schedule(job);
        return;
    }
    chunk_merge(job, c);
    free(c);
    schedule(job);
}

/* --------------------------------------------------------------------------------------- */
/* Input phase                                                                               */

/* The buffers the core writes gradients into: an output placed in shared memory is written
 * there in place; the others get a buffer. A compact layer computes grad_l_obj and
 * grad_l_rows together (the core needs both), also when only the dense grad_l is asked for
 * (scattered from them in the output phase). Not zeroed: yl_image writes every element. */
static int alloc_grads(yls_infer *job)
{
    yls_infer_input *in = &job->in;
    const yl_problem *p = &job->prob;
    size_t es = in->grad_dtype == YL_F64 ? 8 : 4;
    for (int l = 0; l < p->num_layers; l++) {
        bool (*w)[YL_MAX_LAYERS] = in->want_grad;
        if (in->compact) {
            bool any = w[YLS_GRAD_OBJ][l] || w[YLS_GRAD_ROWS][l] || w[YLS_GRAD_DENSE][l];
            w[YLS_GRAD_OBJ][l] = w[YLS_GRAD_ROWS][l] = any;
        }
        /* the core writes a dense layer's gradient, or a compact one's two parts */
        int first = in->compact ? YLS_GRAD_OBJ : YLS_GRAD_DENSE,
            last = in->compact ? YLS_GRAD_ROWS : YLS_GRAD_DENSE;
        for (int k = first; k <= last; k++) {
            if (!w[k][l])
                continue;
            job->any_grads = true;
            size_t n = k == YLS_GRAD_DENSE ? (size_t)p->batch * (size_t)p->layer_elems[l]
                       : k == YLS_GRAD_OBJ ? (size_t)p->batch * (size_t)p->anchors[l]
                                           : (size_t)in->cl[l].n * (size_t)(5 + p->num_classes);
            const yls_output_req *o = NULL;
            for (int i = 0; i < in->n_out; i++)
                if ((int)yls_outputs[in->out[i].kind].grad == k && in->out[i].layer == l)
                    o = &in->out[i];
            if (o && o->shm.region) {
                job->grads[k][l] = (yls_grad_buf){yls_output_shm_ptr(o), true};
                continue;
            }
            if (k == YLS_GRAD_ROWS && n == 0)
                continue; /* no rows: nothing to write */
            job->grads[k][l].p = n <= SIZE_MAX / es ? yls_big_alloc(n * es) : NULL;
            if (!job->grads[k][l].p)
                return -1;
        }
    }
    return 0;
}

/* How long the lead gives its core to the loop thread (see input_work). */
#define LEAD_YIELD_NS 200000

static void input_work(yls_work *w)
{
    yls_infer *job = container_of(w, yls_infer, work);
    job->t_input0 = uv_hrtime();
    yls_fail *f = &job->fail;
    yls_budget_hit();
    yls_budget_credit_begin(job->reserve);
    job->reserve = 0;
    if (job->encoding != YLS_ENC_IDENTITY) {
        size_t pad = job->header_len >= 0 ? (size_t)((16 - (uint64_t)job->header_len % 16) % 16) : 0;
        uint8_t *base, *data;
        size_t len;
        if (yls_inflate(job->encoding, job->body.data, job->body.len, (size_t)job->inflate_limit,
                        pad, &base, &data, &len, f))
            goto done;
        yls_big_free(job->body.base);
        job->body = (yls_body){base, data, len, len, pad};
    }
    yls_budget_scope_begin(); /* the JSON tree is counted while it lives */
    int prc = yls_infer_parse(&job->in, job->model, job->body.data, job->body.len,
                              job->header_len, job->srv->shm, f);
    yls_budget_scope_end();
    if (prc)
        goto done;
    yls_infer_input *in = &job->in;
    /* a run recorded under a name its own endpoints cannot reach could never be deleted */
    if (in->run[0] && yls_route_run_name_check(job->srv->router, job->srv, in->run, f))
        goto done;
    yl_error err;
    int L = in->num_layers;
    int rc;
    if (in->compact) {
        yl_compact_layer cl[YL_MAX_LAYERS];
        for (int l = 0; l < L; l++)
            cl[l] = (yl_compact_layer){in->cl[l].box, in->cl[l].rows, in->cl[l].index};
        rc = yl_problem_init_compact(&job->prob, &in->cfg, cl, L,
                                     in->has_boxes ? &in->boxes : NULL,
                                     in->has_boxes ? NULL : in->y_true, in->has_boxes ? 0 : L,
                                     &err);
    } else {
        rc = yl_problem_init(&job->prob, &in->cfg, in->outputs, L,
                             in->has_boxes ? &in->boxes : NULL, in->has_boxes ? NULL : in->y_true,
                             in->has_boxes ? 0 : L, &err);
    }
    if (rc != YL_OK) {
        yls_fail_set(f, rc == YL_ENOMEM ? 500 : 400, "%s", err.msg);
        goto done;
    }
    job->problem_ok = true;
    if (yls_infer_check_shm_outputs(in, &job->prob, f))
        goto done;
    /* JSON output is capped like JSON input: decided before any image is computed */
    uint64_t js = json_bound(job);
    if (js > job->srv->opt.max_json) {
        yls_fail_set(f, 400,
                     "the JSON response would take up to %" PRIu64 " bytes, over the limit of "
                     "%" PRIu64 " (--max-json); ask for the large outputs (gradients) as binary "
                     "data (\"binary_data_output\": true)",
                     js, job->srv->opt.max_json);
        goto done;
    }
    int64_t B = job->prob.batch;
    if (yls_image_ids_check(in, B, f))
        goto done;
    if (in->eval && eval_check(job, f))
        goto done;
    job->images = calloc((size_t)B, sizeof *job->images);
    if (in->eval) {
        job->eval_blob = calloc((size_t)B, sizeof *job->eval_blob);
        job->eval_len = calloc((size_t)B, sizeof *job->eval_len);
    }
    if (!job->images || (in->eval && (!job->eval_blob || !job->eval_len))) {
        yls_fail_set(f, 503, "out of memory for %" PRId64 " images; retry later", B);
        goto done;
    }
    if (alloc_grads(job))
        yls_fail_set(f, 503, "out of memory for the gradients; retry later");
done:
    yls_budget_give(yls_budget_credit_end());
    if (job->fail.status && yls_budget_hit())
        yls_budget_fail(f, "this request's input (body, parsed JSON, tensors, gradients)");
    job->t_input1 = uv_hrtime();
    if (job->fail.status)
        return;
    /* the images, starting on this thread at once; the loop queues the helpers */
    job->t_chunks_queued = job->t_input1;
    job->lead.job = job;
    job->lead.fail_b = -1;
    if (job->srv->opt.threads > 1 && job->prob.batch > 1) {
        yls_pool_tell(job->srv, &job->ready);
        /* The loop thread, woken by the message, was often put on this thread's core and
         * left to wait there for its time slice (1-4 ms, the other core idle: perf sched),
         * so that the helpers started late or not at all. Give it the core until it has
         * queued them, for at most LEAD_YIELD_NS. */
        for (uint64_t t0 = uv_hrtime(); !atomic_load(&job->helpers_queued) &&
                                        uv_hrtime() - t0 < LEAD_YIELD_NS;)
            sched_yield();
    }
    run_images(job, &job->lead);
}

/* The lead's message: queue its helpers (loop thread). */
static void on_ready(yls_loop_msg *m)
{
    yls_infer *job = container_of(m, yls_infer, ready);
    schedule(job);
    atomic_store(&job->helpers_queued, true);
}

static void input_done(yls_work *w, int status)
{
    (void)status;
    yls_infer *job = container_of(w, yls_infer, work);
    yls_request *r = job->req;
    if (job->in.run[0])
        snprintf(r->run, sizeof r->run, "%s", job->in.run);
    r->has_step = job->in.has_step;
    r->step = job->in.step;
    job->running--; /* the input phase, and its lead chunk */
    if (!job->lead.job) { /* the input failed: no image was started */
        if (job->gone)
            finish_gone(job);
        else
            finish_fail(job);
        return;
    }
    r->images = job->prob.batch;
    yls_pool_untell(job->srv, &job->ready); /* not delivered yet: schedule does it now */
    chunk_merge(job, &job->lead);
    schedule(job); /* the rest of the images, or the output once no chunk runs */
}

/* --------------------------------------------------------------------------------------- */

static void infer_free(void *work);

enum MHD_Result yls_infer_start(yls_request *r)
{
    if (r->route.model->eval >= 0)
        return yls_eval_start(r);
    yls_infer *job = calloc(1, sizeof *job);
    if (!job)
        return yls_reply_error(r, 503, "out of memory; retry later");
    yls_server *s = r->srv;
    job->req = r;
    job->srv = s;
    job->model = r->route.model;
    job->body = r->body;
    memset(&r->body, 0, sizeof r->body);
    job->header_len = r->header_len;
    job->encoding = r->encoding;
    job->accept = r->accept;
    job->inflate_limit = r->header_len >= 0 ? s->opt.max_body : s->opt.max_json;
    job->reserve = r->reserve; /* spent by the input phase */
    r->reserve = 0;
    job->fail_image = -1;
    atomic_init(&job->next_image, 0);
    atomic_init(&job->fail_min, INT64_MAX);
    atomic_init(&job->own_waiting, 0);
    atomic_init(&job->helpers_queued, false);
    job->ready.cb = on_ready;
    job->running = 1; /* the input phase */
    job->t_ready = uv_hrtime();
    r->work = job;
    r->work_free = infer_free;
    r->on_gone = on_gone;
    yls_request_suspend(r);
    yls_pool_queue(s, &job->work, input_work, input_done);
    return MHD_YES;
}

static void infer_free(void *work)
{
    yls_infer *job = work;
    if (!job)
        return;
    yls_big_free(job->body.base);
    yls_budget_give(job->reserve);
    yls_infer_input_free(&job->in);
    for (int k = 0; k < YLS_GRAD_KINDS; k++)
        for (int l = 0; l < YL_MAX_LAYERS; l++)
            if (!job->grads[k][l].borrowed)
                yls_big_free(job->grads[k][l].p);
    free(job->images);
    if (job->eval_blob)
        for (int64_t b = 0; b < job->prob.batch; b++)
            yls_big_free(job->eval_blob[b]);
    free(job->eval_blob);
    free(job->eval_len);
    if (job->payload)
        payload_free_cb(job->payload);
    free(job);
}

static uint64_t span(uint64_t from, uint64_t to) { return from && to > from ? to - from : 0; }

void yls_infer_account(yls_request *r)
{
    yls_model_stats *st = &r->route.model->stats;
    uint64_t total = span(r->t_start, r->t_reply ? r->t_reply : uv_hrtime());
    /* an evaluation model's work is eval.c's job, without these phases */
    const yls_infer *jm = r->route.model->eval < 0 ? r->work : NULL;
    if (jm)
        yls_metrics_infer(r->srv, r, (double)total / 1e9,
                          (double)(span(jm->t_ready, jm->t_input0) +
                                   span(jm->t_chunks_queued, jm->t_infer0) +
                                   span(jm->t_output_queued, jm->t_output0)) / 1e9,
                          (double)(span(jm->t_input0, jm->t_input1) +
                                   span(jm->t_infer0, jm->t_infer1) +
                                   span(jm->t_output0, jm->t_output1)) / 1e9);
    else
        yls_metrics_infer(r->srv, r, (double)total / 1e9, 0, 0);
    if (r->status != 200) {
        yls_stats_add(&st->fail, total);
        return;
    }
    yls_stats_add(&st->success, total);
    st->execution_count++;
    st->inference_count += (uint64_t)r->images;
    uv_timeval64_t now;
    if (uv_gettimeofday(&now) == 0)
        st->last_inference_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_usec / 1000;
    const yls_infer *j = jm;
    if (!j)
        return;
    yls_stats_add(&st->queue, span(j->t_ready, j->t_input0) + span(j->t_chunks_queued, j->t_infer0) +
                                  span(j->t_output_queued, j->t_output0));
    yls_stats_add(&st->compute_input, span(j->t_input0, j->t_input1));
    yls_stats_add(&st->compute_infer, span(j->t_infer0, j->t_infer1));
    yls_stats_add(&st->compute_output, span(j->t_output0, j->t_output1));
}
