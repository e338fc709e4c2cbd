#!/bin/sh
# The container DNS that knows the replicas' names (podman's aardvark-dns, Docker's
# 127.0.0.11) is the first nameserver of /etc/resolv.conf; the lines after it are the
# host's resolvers, which answer NXDOMAIN for yololossd-N. HAProxy's parse-resolv-conf
# would ask all of them, so the first one is handed over in YOLOLOSS_DNS instead.
# YOLOLOSS_DNS set in the environment wins.
set -eu
: "${YOLOLOSS_DNS:=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)}"
[ -n "$YOLOLOSS_DNS" ] || { echo "haproxy-entrypoint: no nameserver in /etc/resolv.conf" >&2; exit 1; }
export YOLOLOSS_DNS
echo "haproxy-entrypoint: replicas resolved by $YOLOLOSS_DNS" >&2
exec haproxy -W -db -f /etc/haproxy/haproxy.cfg "$@"
