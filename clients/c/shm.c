/*
 * shm.c: the client's shared-memory object (ylc_shm.h). Names are unique per process and
 * creation is exclusive, so two clients never share an object by accident.
 */
#include "ylc_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int ylc_shm_create(ylc_shm *s, size_t size)
{
    static unsigned counter;
    memset(s, 0, sizeof *s);
    int fd = -1;
    for (int tries = 0; tries < 16 && fd < 0; tries++) {
        /* atomic: clients of different threads create objects concurrently */
        unsigned n = __atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED);
        snprintf(s->name, sizeof s->name, "yololoss-%ld-%u", (long)getpid(), n);
        snprintf(s->key, sizeof s->key, "/%s", s->name);
        fd = shm_open(s->key, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return -1;
    }
    if (fd < 0)
        return -1;
    s->linked = true;
    if (ftruncate(fd, (off_t)size) != 0)
        goto fail;
    s->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s->base == MAP_FAILED) {
        s->base = NULL;
        goto fail;
    }
    s->size = size;
    close(fd);
    return 0;
fail:;
    int e = errno;
    close(fd);
    ylc_shm_destroy(s);
    errno = e;
    return -1;
}

void ylc_shm_unlink(ylc_shm *s)
{
    if (s->linked)
        shm_unlink(s->key);
    s->linked = false;
}

void ylc_shm_destroy(ylc_shm *s)
{
    if (s->base)
        munmap(s->base, s->size);
    ylc_shm_unlink(s);
    memset(s, 0, sizeof *s);
}
