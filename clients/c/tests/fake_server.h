/*
 * fake_server.h: a scripted HTTP server on 127.0.0.1 for the clients' retry tests. It
 * answers each request (one connection per request, served in turn) by the next step of
 * its script and counts the requests it received, so that a test checks how many
 * attempts a client made instead of how long it took.
 */
#ifndef FAKE_SERVER_H
#define FAKE_SERVER_H

typedef enum {
    FAKE_OK,     /* 200 with a valid one-layer infer answer (loss 2.5) */
    FAKE_STATUS, /* the status (and Retry-After when given) with an {"error"} body */
    FAKE_CLOSE,  /* close the connection without answering */
    FAKE_RESET,  /* reset the connection (SO_LINGER 0) without answering */
    FAKE_HANG,   /* never answer (until the client gives up or the server stops) */
} fake_action;

typedef struct {
    fake_action act;
    int status;              /* FAKE_STATUS */
    const char *retry_after; /* FAKE_STATUS: the Retry-After value, NULL: none */
} fake_step;

typedef struct fake_server fake_server;

/* Serve script[0], script[1], ... to the requests in turn, then `after` to all later ones.
 * NULL when it cannot listen. */
fake_server *fake_start(const fake_step *script, int n, fake_step after);
const char *fake_url(const fake_server *f);
/* Requests received so far (each a client's attempt). */
int fake_requests(fake_server *f);
void fake_stop(fake_server *f);

/* Answer GET /v2 with 200 and v2_body (e.g. {"extensions":["system_shared_memory"]}) and
 * POST /v2/systemsharedmemory/... with register_status; neither goes through the script
 * nor counts as a request. */
void fake_set_meta(fake_server *f, const char *v2_body, int register_status);
/* Shared-memory registrations received, and whether the last counted request mentioned
 * shared_memory_region. */
int fake_registrations(fake_server *f);
int fake_last_used_shm(fake_server *f);
/* Whether the last counted request had an Accept-Encoding header. */
int fake_last_accepted_coding(fake_server *f);

/* A loopback URL on which nothing listens (connections are refused). */
void fake_refusing_url(char *buf, unsigned long len);

#endif
