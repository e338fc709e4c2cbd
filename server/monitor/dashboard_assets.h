/*
 * dashboard_assets.h: the dashboard's files, embedded at build time (server/server.mk runs
 * server/monitor/dashboard/embed.py over server/monitor/dashboard/ and npm's uPlot into
 * $(B)/server/monitor/dashboard_assets.c).
 */
#ifndef YLS_DASHBOARD_ASSETS_H
#define YLS_DASHBOARD_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *name; /* "index.html", "app.js", "uPlot.iife.min.js", ... */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} yls_asset;

extern const yls_asset yls_assets[]; /* ends with a NULL name */

#endif /* YLS_DASHBOARD_ASSETS_H */
