/*
 * shm.c: Triton's system shared-memory extension (docs/protocol.md, "Shared memory"): the
 * registry of regions (its endpoints are shm_endpoints.c).
 *
 * Registration opens the POSIX object read-write and maps just the registered window (from
 * the page holding `offset`), after checking the window lies inside the object. The object's
 * descriptor stays open so that every use checks the object still holds the window: a
 * client that truncates its object after registering would otherwise turn the daemon's
 * next read into SIGBUS. (The check and the read are not atomic; docs/protocol.md's trust
 * model says what that leaves.) A region is unmapped when it is unregistered and no request
 * holds it any more, or at exit.
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>

/* Regions a daemon keeps at once: each holds a descriptor and a mapping. */
#define YLS_SHM_MAX_REGIONS 1024

struct yls_shm {
    pthread_mutex_t mu;
    yls_shm_region *head; /* registered regions */
    unsigned n;
};

yls_shm *yls_shm_new(void)
{
    yls_shm *s = calloc(1, sizeof *s);
    if (s && pthread_mutex_init(&s->mu, NULL)) {
        free(s);
        return NULL;
    }
    return s;
}

static void region_destroy(yls_shm_region *r)
{
    if (r->map && r->map != MAP_FAILED)
        munmap(r->map, r->map_len);
    if (r->fd >= 0)
        close(r->fd);
    free(r->name);
    free(r->key);
    free(r);
}

/* Drop one reference, under the lock; true when the region must be destroyed. */
static bool unref_locked(yls_shm_region *r) { return --r->refs == 0; }

void yls_shm_free(yls_shm *s)
{
    if (!s)
        return;
    yls_shm_region *r = s->head;
    while (r) {
        yls_shm_region *next = r->next;
        region_destroy(r);
        r = next;
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static yls_shm_region *find_locked(yls_shm *s, const char *name)
{
    for (yls_shm_region *r = s->head; r; r = r->next)
        if (!strcmp(r->name, name))
            return r;
    return NULL;
}

/* A POSIX shared-memory name: "/" then 1..NAME_MAX bytes without '/', not "." or "..". */
static bool key_ok(const char *key)
{
    size_t n = strlen(key);
    return n >= 2 && n <= 255 && key[0] == '/' && !strchr(key + 1, '/') && strcmp(key, "/.") &&
           strcmp(key, "/..");
}

int yls_shm_register(yls_shm *s, const char *name, const char *key, uint64_t offset,
                     uint64_t byte_size, yls_fail *f)
{
    if (!name[0])
        return yls_fail_set(f, 400, "a shared-memory region needs a name");
    if (!key_ok(key))
        return yls_fail_set(f, 400,
                            "region '%s': key '%.260s' is not a POSIX shared-memory name "
                            "('/' then 1 to 254 bytes without '/')",
                            name, key);
    if (byte_size == 0)
        return yls_fail_set(f, 400, "region '%s': byte_size must be positive", name);
    if (offset > INT64_MAX || byte_size > INT64_MAX - offset)
        return yls_fail_set(f, 400, "region '%s': offset + byte_size overflows", name);

    pthread_mutex_lock(&s->mu);
    bool taken = find_locked(s, name) != NULL;
    unsigned n = s->n;
    pthread_mutex_unlock(&s->mu);
    if (taken)
        return yls_fail_set(f, 400,
                            "shared-memory region '%s' is already registered (unregister it "
                            "first)",
                            name);
    if (n >= YLS_SHM_MAX_REGIONS)
        return yls_fail_set(f, 400,
                            "region '%s': %u regions are registered, the most this daemon keeps",
                            name, n);

    yls_shm_region *r = calloc(1, sizeof *r);
    if (!r)
        return yls_fail_set(f, 500, "out of memory");
    r->fd = -1;
    r->name = strdup(name);
    r->key = strdup(key);
    r->offset = offset;
    r->byte_size = byte_size;
    if (!r->name || !r->key) {
        region_destroy(r);
        return yls_fail_set(f, 500, "out of memory");
    }
    r->fd = shm_open(key, O_RDWR | O_CLOEXEC, 0);
    if (r->fd < 0) {
        int e = errno;
        region_destroy(r);
        if (e == ENOENT)
            return yls_fail_set(f, 400,
                                "region '%s': shared-memory object '%s' does not exist (the key "
                                "must name an object the client created with shm_open, on this "
                                "host)",
                                name, key);
        return yls_fail_set(f, 400, "region '%s': cannot open shared-memory object '%s' "
                            "read-write: %s", name, key, strerror(e));
    }
    struct stat st;
    if (fstat(r->fd, &st) || !S_ISREG(st.st_mode)) {
        region_destroy(r);
        return yls_fail_set(f, 400, "region '%s': '%s' is not a shared-memory object", name,
                            key);
    }
    if ((uint64_t)st.st_size < offset + byte_size) {
        region_destroy(r);
        return yls_fail_set(f, 400,
                            "region '%s': offset %" PRIu64 " + byte_size %" PRIu64 " = %" PRIu64
                            " is beyond the end of shared-memory object '%s' (%" PRIu64
                            " bytes)",
                            name, offset, byte_size, offset + byte_size, key,
                            (uint64_t)st.st_size);
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t start = offset - offset % page;
    if (offset - start + byte_size > SIZE_MAX) {
        region_destroy(r);
        return yls_fail_set(f, 400, "region '%s': too large to map", name);
    }
    r->map_len = (size_t)(offset - start + byte_size);
    r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, (off_t)start);
    if (r->map == MAP_FAILED) {
        int e = errno;
        region_destroy(r);
        return yls_fail_set(f, 400, "region '%s': cannot map '%s': %s", name, key, strerror(e));
    }
    r->base = (uint8_t *)r->map + (offset - start);
    r->dev = st.st_dev;
    r->ino = st.st_ino;
    r->refs = 1;
    r->registered = true;

    pthread_mutex_lock(&s->mu);
    if (find_locked(s, name)) { /* registered meanwhile by another request: keep the first */
        pthread_mutex_unlock(&s->mu);
        region_destroy(r);
        return yls_fail_set(f, 400, "shared-memory region '%s' is already registered", name);
    }
    r->next = s->head;
    s->head = r;
    s->n++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int yls_shm_unregister(yls_shm *s, const char *name)
{
    yls_shm_region *dead = NULL;
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (yls_shm_region **pp = &s->head; *pp;) {
        yls_shm_region *r = *pp;
        if (name && strcmp(r->name, name)) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        s->n--;
        n++;
        r->registered = false;
        if (unref_locked(r)) {
            r->next = dead;
            dead = r;
        } else {
            r->next = NULL; /* requests still hold it: the last release unmaps it */
        }
    }
    pthread_mutex_unlock(&s->mu);
    while (dead) {
        yls_shm_region *next = dead->next;
        region_destroy(dead);
        dead = next;
    }
    return n;
}

unsigned yls_shm_count(yls_shm *s)
{
    pthread_mutex_lock(&s->mu);
    unsigned n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int yls_shm_status(yls_shm *s, const char *name, char **json, yls_fail *f)
{
    json_t *a = json_array();
    pthread_mutex_lock(&s->mu);
    for (yls_shm_region *r = s->head; r; r = r->next)
        if (!name || !strcmp(r->name, name))
            json_array_append_new(a, json_pack("{s:s,s:s,s:I,s:I}", "name", r->name, "key", r->key,
                                               "offset", (json_int_t)r->offset, "byte_size",
                                               (json_int_t)r->byte_size));
    pthread_mutex_unlock(&s->mu);
    if (name && json_array_size(a) == 0) {
        json_decref(a);
        return yls_fail_set(f, 400, "no shared-memory region '%s' is registered", name);
    }
    *json = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    if (!*json)
        return yls_fail_set(f, 500, "out of memory");
    return 0;
}

yls_shm_region *yls_shm_acquire(yls_shm *s, const char *name, const char *what, yls_fail *f)
{
    if (!s) {
        yls_fail_set(f, 400,
                     "%s: shared memory is off on this daemon (it is on by default only when the "
                     "daemon listens on loopback; --shared-memory on)",
                     what);
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    yls_shm_region *r = find_locked(s, name);
    if (r)
        r->refs++;
    pthread_mutex_unlock(&s->mu);
    if (!r) {
        yls_fail_set(f, 400, "%s: no shared-memory region '%.200s' is registered", what, name);
        return NULL;
    }
    struct stat st;
    if (fstat(r->fd, &st) || (uint64_t)st.st_size < r->offset + r->byte_size) {
        yls_fail_set(f, 400,
                     "%s: region '%s': its object '%s' no longer holds the registered window "
                     "(it ends at %" PRIu64 " bytes, the window at %" PRIu64 ")",
                     what, name, r->key, (uint64_t)st.st_size, r->offset + r->byte_size);
        yls_shm_release(s, r);
        return NULL;
    }
    return r;
}

void yls_shm_release(yls_shm *s, yls_shm_region *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&s->mu);
    bool last = unref_locked(r);
    pthread_mutex_unlock(&s->mu);
    if (last)
        region_destroy(r);
}

bool yls_shm_enabled(const yls_options *o)
{
    if (o->shared_memory != YLS_SHM_AUTO)
        return o->shared_memory == YLS_SHM_ON;
    const char *h = o->host;
    if (!strcmp(h, "localhost"))
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

