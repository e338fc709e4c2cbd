/*
 * ylc_http.h (internal to the C client): one HTTP exchange with yololossd through libcurl,
 * with the retry policy of the wire contract (yololoss_client.h, RETRIES), and the small
 * helpers the request builder shares (errors, a growable string).
 */
#ifndef YLC_HTTP_H
#define YLC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "yololoss_client.h"

/* The connection and the retry policy of a client. */
typedef struct {
    CURL *curl;
    char *base;              /* URL without a trailing slash */
    struct curl_slist *auth; /* the Authorization header, NULL: none */
    bool loopback;           /* the URL's host is 127.0.0.0/8, ::1 or localhost */
    double timeout;          /* default deadline of a call */
    int max_attempts;        /* 0: as many as the deadline allows */
    double backoff_base, backoff_max;
    uint64_t rng;            /* the backoff's jitter (xorshift64) */
    unsigned long retries;
} ylc_http;

/* The one deadline of a call (every exchange it makes shares it). */
typedef struct {
    double deadline; /* CLOCK_MONOTONIC seconds */
    double timeout;  /* for messages */
} ylc_clock;

/* A growable string. */
typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} ylc_sbuf;

typedef struct {
    const void *p;
    size_t len;
} ylc_segment;

typedef struct {
    ylc_sbuf body;
    long long header_len; /* Inference-Header-Content-Length, -1: absent, -2: unreadable */
    double retry_after;   /* -1: absent */
} ylc_answer;

int ylc_fail(ylc_error *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

bool ylc_sb_reserve(ylc_sbuf *b, size_t more);
void ylc_sb_put(ylc_sbuf *b, const void *s, size_t n);
void ylc_sb_str(ylc_sbuf *b, const char *s);
void ylc_sb_printf(ylc_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ylc_sb_json_string(ylc_sbuf *b, const char *s); /* a JSON string literal */

int ylc_http_init(ylc_http *h, const ylc_options *opt, ylc_error *err);
void ylc_http_free(ylc_http *h);
ylc_clock ylc_clock_start(const ylc_http *h, double timeout); /* timeout <= 0: h's */

/* method "GET" or "POST" (the segments as body) of base + path. Returns the status, 0 on a
 * transport failure (err filled). Retried as the policy says, within ck. */
long ylc_http_exchange(ylc_http *h, const char *method, const char *path,
                       const ylc_segment *seg, int nseg, const char *const *extra,
                       const ylc_clock *ck, ylc_answer *a, ylc_error *err);

/* The "error" of a JSON error body, or the body itself, into err; returns -1. */
int ylc_http_error(ylc_error *err, long status, const ylc_answer *a);

#endif
