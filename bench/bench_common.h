/* bench_common: what the daemon benchmarks (bench_server, bench_wire, bench_client_c) share,
 * so that they measure the same workload with the same clock and start the daemon the same
 * way: the seeded generator, the standard workload, timing and medians, a growable byte
 * buffer for request bodies, and yololossd on a free loopback port. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "yololoss.h"

/* The prefix of die()'s messages: each benchmark sets its own name first thing in main. */
extern const char *bench_name;

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A "--flag VALUE" option: into *i (atoi) or *s (the argument itself). */
typedef struct {
    const char *flag;
    int *i;
    const char **s;
} option;

/* Reads argv's --flag VALUE pairs into opts (ended by a NULL flag): NULL, or the first flag
 * that is none of them. */
const char *parse_options(int argc, char **argv, const option *opts);

/* splitmix64 from a fixed seed; reseed() starts the sequence again (a second workload that
 * must not depend on how much of the sequence the first one used). */
void reseed(void);
uint64_t next_u64(void);
double uniform(void);
double normal(void); /* N(0, 1), Box-Muller */

double now_s(void); /* CLOCK_MONOTONIC, seconds */
int cmp_double(const void *a, const void *b);
double median(double *v, int n); /* sorts v */

/* The standard workload: B images of size x size (grids size/32, /16, /8), C classes, T = 8
 * boxes per image, logits from N(0, 1), fp32; laid out as the daemon's tensors. */
typedef struct {
    int B, size, C, T;
    int64_t grid[3];
    float *out[3];
    size_t out_n[3];
    float *boxes;
} workload;

void make_workload(workload *w, int B, int size, int C);
void free_workload(workload *w);

/* The core's problem on w with the default config (the 9 YOLOv3 anchors, as the daemon's):
 * out and boxes are filled here and borrowed by p, so they must outlive it. Dies on error. */
void workload_problem(const workload *w, yl_tensor out[3], yl_tensor *boxes, yl_problem *p);

typedef struct {
    char *p;
    size_t len, cap;
} buf;

void reserve(buf *b, size_t n); /* room for n more bytes and a NUL */
void put(buf *b, const void *s, size_t n);
void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* yololossd at path on 127.0.0.1, a free port (read from its "listening on" line), with
 * --threads threads and the NULL-terminated extra options; its stdout (the access log) goes
 * to /dev/null. Dies when it exits or has not listened within 60 s. */
pid_t start_daemon(const char *path, int threads, const char *const *extra, unsigned *port);
/* SIGTERM and wait: true when it exited with status 0. */
bool stop_daemon(pid_t pid);

#endif
