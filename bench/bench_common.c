/* bench_common: see bench_common.h. */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *bench_name = "bench";

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", bench_name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

const char *parse_options(int argc, char **argv, const option *opts)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const option *o = opts;
        while (o->flag && strcmp(argv[i], o->flag))
            o++;
        if (!o->flag)
            return argv[i];
        if (o->i)
            *o->i = atoi(argv[i + 1]);
        else
            *o->s = argv[i + 1];
    }
    return NULL;
}

#define SEED 0x2545F4914F6CDD1Dull
static uint64_t rng_state = SEED;

void reseed(void) { rng_state = SEED; }

uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }

double normal(void)
{
    double u = uniform(), v = uniform();
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void make_workload(workload *w, int B, int size, int C)
{
    w->B = B, w->size = size, w->C = C, w->T = 8;
    for (int l = 0; l < 3; l++) {
        w->grid[l] = size / 32 << l;
        w->out_n[l] = (size_t)B * (size_t)(w->grid[l] * w->grid[l]) * (size_t)(3 * (5 + C));
        w->out[l] = malloc(w->out_n[l] * sizeof(float));
        if (!w->out[l])
            die("out of memory");
        for (size_t i = 0; i < w->out_n[l]; i++)
            w->out[l][i] = (float)normal();
    }
    w->boxes = calloc((size_t)B * (size_t)w->T * 5, sizeof(float));
    if (!w->boxes)
        die("out of memory");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < w->T; t++) {
            float *r = w->boxes + ((size_t)b * (size_t)w->T + (size_t)t) * 5;
            double bw = 10 + uniform() * size * 0.5, bh = 10 + uniform() * size * 0.5;
            r[0] = (float)floor(uniform() * (size - bw));
            r[1] = (float)floor(uniform() * (size - bh));
            r[2] = (float)(r[0] + floor(bw));
            r[3] = (float)(r[1] + floor(bh));
            r[4] = (float)(next_u64() % (uint64_t)C);
        }
}

void free_workload(workload *w)
{
    for (int l = 0; l < 3; l++)
        free(w->out[l]);
    free(w->boxes);
}

void workload_problem(const workload *w, yl_tensor out[3], yl_tensor *boxes, yl_problem *p)
{
    yl_config cfg;
    yl_config_default(&cfg, 9);
    *boxes = (yl_tensor){w->boxes, YL_F32, 3, {w->B, w->T, 5}};
    for (int l = 0; l < 3; l++)
        out[l] = (yl_tensor){w->out[l], YL_F32, 4, {w->B, w->grid[l], w->grid[l], 3 * (5 + w->C)}};
    yl_error err;
    if (yl_problem_init(p, &cfg, out, 3, boxes, NULL, 0, &err) != YL_OK)
        die("%s", err.msg);
}

void reserve(buf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            die("out of memory");
    }
}

void put(buf *b, const void *s, size_t n)
{
    reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void putf(buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n);
}

pid_t start_daemon(const char *path, int threads, const char *const *extra, unsigned *port)
{
    char log[] = "/tmp/bench_daemon_XXXXXX";
    int fd = mkstemp(log);
    if (fd < 0)
        die("mkstemp: %s", strerror(errno));
    char th[16];
    snprintf(th, sizeof th, "%d", threads);
    const char *argv[32] = {path, "--host", "127.0.0.1", "--port", "0", "--threads", th};
    int argc = 7;
    for (; extra && *extra && argc < 31; extra++)
        argv[argc++] = *extra;
    fflush(stdout); /* the child must not write this process's buffered lines again */
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        if (devnull >= 0)
            dup2(devnull, 1);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    static const char mark[] = "listening on http://127.0.0.1:";
    for (double t0 = now_s();;) {
        char text[4096] = "";
        FILE *f = fopen(log, "r");
        size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f)
            fclose(f);
        text[n] = '\0';
        const char *p = strstr(text, mark);
        if (p) {
            *port = (unsigned)atoi(p + strlen(mark));
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            die("%s did not start: %s", path, text);
        if (now_s() - t0 > 60) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            die("%s did not listen within 60 s: %s", path, text);
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    close(fd);
    unlink(log);
    return pid;
}

bool stop_daemon(pid_t pid)
{
    int st = 0;
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}
