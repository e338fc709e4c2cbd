/*
 * shm.h: Triton's system shared-memory extension, the region registry (shm.c).
 *
 * A region is a named window [offset, offset + byte_size) of a POSIX shared-memory object
 * (shm_open key), mapped read-write by the daemon at registration. Requests name regions
 * for their inputs (read in place: the core borrows pointers into the mapping) and outputs
 * (gradients written in place). The registry is touched by the loop thread (register,
 * unregister, status) and by pool threads (parsing a request), so it has a mutex; a request
 * holds a reference on each region it uses from parse to its end, and a region unregistered
 * meanwhile is unmapped when its last reference goes.
 */
#ifndef YLS_SHM_H
#define YLS_SHM_H

#include "../server.h"

#include <sys/types.h>

typedef struct yls_shm yls_shm;

typedef struct yls_shm_region {
    struct yls_shm_region *next;
    char *name, *key;
    uint64_t offset, byte_size; /* the window in the object */
    int fd;                     /* kept open: the object's size is checked again at each use */
    void *map;                  /* the mapping, from offset rounded down to a page */
    size_t map_len;
    uint8_t *base;              /* the window's first byte */
    dev_t dev;                  /* the object's identity, for overlap checks */
    ino_t ino;
    unsigned refs;              /* 1 for the registry while registered, + 1 per request */
    bool registered;
} yls_shm_region;

yls_shm *yls_shm_new(void);
/* Unmap everything (at exit; no request may hold a region). */
void yls_shm_free(yls_shm *s);

/* Register: 0, or -1 with f set (400 naming region and key). */
int yls_shm_register(yls_shm *s, const char *name, const char *key, uint64_t offset,
                     uint64_t byte_size, yls_fail *f);
/* Unregister one region (name) or all (NULL). An unknown name is not an error (Triton's
 * behaviour): unregistering is idempotent. Returns how many regions were unregistered. */
int yls_shm_unregister(yls_shm *s, const char *name);
/* [{"name","key","offset","byte_size"}] of every region, or of name alone (-1 with f set,
 * 400, when it is not registered). */
int yls_shm_status(yls_shm *s, const char *name, char **json, yls_fail *f);
unsigned yls_shm_count(yls_shm *s);

/* A reference on region `name` for a request, after checking that the object still holds
 * the whole window (a client may have shrunk it). NULL with f set (400 naming what and
 * name) when unknown or shrunk. `what` names the tensor in messages ("input 'output_0'"). */
yls_shm_region *yls_shm_acquire(yls_shm *s, const char *name, const char *what, yls_fail *f);
void yls_shm_release(yls_shm *s, yls_shm_region *r);

/* Whether the extension is on: --shared-memory on, or auto and the daemon listens on a
 * loopback address. */
bool yls_shm_enabled(const yls_options *o);

#endif /* YLS_SHM_H */
