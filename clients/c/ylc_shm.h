/*
 * ylc_shm.h (internal to the C client): the client's POSIX shared-memory object, the
 * storage behind a region of Triton's system shared-memory extension. Only the local
 * side (shm_open, ftruncate, mmap, shm_unlink); registering it with the daemon is HTTP
 * and lives in yololoss_client.c.
 */
#ifndef YLC_SHM_H
#define YLC_SHM_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char key[72];   /* "/yololoss-<pid>-<n>": the shm_open name */
    char name[64];  /* the region name registered ("yololoss-<pid>-<n>") */
    void *base;     /* the mapping, NULL: none */
    size_t size;
    bool linked;    /* the name still exists in /dev/shm */
} ylc_shm;

/* A new object of size bytes, mapped read-write: 0, or -1 with errno set. */
int ylc_shm_create(ylc_shm *s, size_t size);
/* Remove the name (the mapping and the daemon's stay valid). */
void ylc_shm_unlink(ylc_shm *s);
/* Unmap and unlink. */
void ylc_shm_destroy(ylc_shm *s);

#endif
