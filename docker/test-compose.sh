#!/usr/bin/env bash
# make docker-compose-test: docker/compose.yaml brought up with podman-compose and checked.
#  - the front end (HAProxy) answers on the published port once the 3 replicas and PostgreSQL
#    are up;
#  - 3 clients in parallel send real batches through it (docker/check_service.py: every
#    answer equal to the numpy reference), all tagged with one run;
#  - the requests spread over the replicas: each replica's access log has some of them, and
#    their sum is what was sent (the front end's log names the replica of each);
#  - shared history: every replica serves all the run's points (GET /v1/runs/{run}/steps),
#    whichever replica computed them (skipped, saying so, until the image's yololossd
#    accepts --history postgresql://...);
#  - live across replicas: an event stream opened through $front before the batches (so
#    served by one replica) carries every point of the run, each once, whichever replica
#    computed it (NOTIFY/LISTEN; skipped when the daemon has no /v1/events);
#  - the same seen by a person: the real dashboard page, opened through $front in headless
#    Chromium before the first batch (docker/check_dashboard.mjs), comes to show every point
#    of the run without a reload, those sent after it follows the run arriving through its
#    one event stream (served by one replica); screenshot in build/compose-dashboard.png;
#  - Prometheus has the 3 replicas as targets, each up once the daemon serves /metrics;
#  - a replica killed, started again, then all three restarted one after another, under a
#    training loop through the front end (docker/check_failover.py, the Python client with
#    its default retries): the loop sees no exception, the history holds each of its steps
#    once, the restarted replica gets requests again, and so does every replica at the end;
#    what the client saw (its retries) is printed;
#  - every replica exits 0 on SIGTERM; then everything is removed (volumes too).
set -euo pipefail
# podman without systemd has no timers for HEALTHCHECK and says so on every run/stop: drop
# that line (the checks run explicitly, with `podman healthcheck run`).
exec 2> >(grep --line-buffered -v 'unable to get systemd connection' >&2)
DOCKER=${DOCKER:-podman}
IMAGE=${DOCKER_IMAGE:-localhost/yololoss:latest}
PYTHON=${PYTHON:-/usr/bin/python3}
COMPOSE=${COMPOSE:-podman-compose}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NODE=${NODE:-node}
project=ylcompose$$
run=compose-$$
say() { printf 'docker-compose-test: %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
compose() { $COMPOSE -f "$HERE/compose.yaml" -p "$project" "$@"; }
replicas=(yololossd-1 yololossd-2 yololossd-3)
# The front end's service in compose.yaml (FRONT=nginx for a compose file of the nginx days).
front=${FRONT:-haproxy}
cname() { echo "${project}_$1_1"; }
# GET inside a replica's container (the replicas publish no port): bash's /dev/tcp, body only.
replica_get() {
  $DOCKER exec "$(cname "$1")" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8000 &&
    printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$1" >&3 && cat <&3' _ "$2" |
    "$PYTHON" -c 'import sys; d=sys.stdin.buffer.read(); h,_,b=d.partition(b"\r\n\r\n");
sys.exit("HTTP " + h.split(b"\r\n")[0].decode()) if b" 200 " not in h.split(b"\r\n")[0] else sys.stdout.buffer.write(b)'
}
dash_pid="" loop_pid=""
cleanup() {
  [[ -z $dash_pid ]] || kill "$dash_pid" 2>/dev/null || true
  [[ -z $loop_pid ]] || kill "$loop_pid" 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then say "KEEP=1: left running (project $project)"; return; fi
  compose down -v >/dev/null 2>&1 || true
  local v
  for v in pgdata prometheus data-1 data-2 data-3; do
    $DOCKER volume rm -f "${project}_$v" >/dev/null 2>&1 || true
  done
  $DOCKER network rm -f "${project}_default" >/dev/null 2>&1 || true
}
trap cleanup EXIT

help=$($DOCKER run --rm --pull=never --no-healthcheck --entrypoint /usr/local/bin/yololossd "$IMAGE" --help)
shared=0
if grep -q -- '--history' <<<"$help" && grep -qi 'postgres' <<<"$help"; then shared=1; else
  export YOLOLOSSD_FLAGS="--threads 2"
  say "SKIPPED shared history: this yololossd has no --history postgresql://... yet (flags: $YOLOLOSSD_FLAGS)"
fi
export YOLOLOSS_PORT=$(free_port) PROMETHEUS_PORT=$(free_port)
compose up -d >/tmp/$project.up.log 2>&1 || { tail -n 30 /tmp/$project.up.log; fail "podman-compose up"; }
url=http://127.0.0.1:$YOLOLOSS_PORT
for i in $(seq 150); do
  curl -sf "$url/v2/health/ready" >/dev/null 2>&1 && break
  ((i < 150)) || { for s in "${replicas[@]}" "$front" postgres; do
                     say "--- $s"; $DOCKER logs "$(cname "$s")" 2>&1 | tail -n 8; done
                   fail "$front not ready on $url after 30 s"; }
  sleep 0.2
done
for s in "${replicas[@]}"; do
  for i in $(seq 50); do
    $DOCKER healthcheck run "$(cname "$s")" >/dev/null 2>&1 && break
    ((i < 50)) || fail "$s not healthy"
    sleep 0.2
  done
done
for i in $(seq 50); do
  $DOCKER exec -e PGPASSWORD=yololoss "$(cname postgres)" \
    psql -h postgres -U yololoss -d yololoss -tAc 'select 1' >/dev/null 2>&1 && break
  ((i < 50)) || fail "PostgreSQL: no password login over TCP as yololoss"
  sleep 0.2
done
say "up: $front on $url, Prometheus on 127.0.0.1:$PROMETHEUS_PORT, 3 replicas healthy, PostgreSQL accepts yololoss"

# Live across replicas: one event stream through $front, opened before any point exists.
events=""
if ((shared)) && grep -q -- '--max-streams' <<<"$help"; then
  events=$(mktemp)
  curl -sN --max-time 600 "$url/v1/events?run=$run" >"$events" 2>/dev/null &
  events_pid=$!
  for i in $(seq 100); do
    grep -q '^retry: ' "$events" && break
    ((i < 100)) || fail "no event stream through $front: $(head -c 300 "$events")"
    sleep 0.2
  done
fi

# The dashboard through $front, in Chromium, before any point of the run exists. It and this
# script take turns through files in $dash (see check_dashboard.mjs).
dash=""
if [[ -n $events ]]; then
  [[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || fail "no ${CHROMIUM:-/usr/bin/chromium} for the dashboard check (.ci/deps installs it)"
  [[ -d $ROOT/server/monitor/dashboard/node_modules/playwright-core ]] ||
    fail "no playwright-core in server/monitor/dashboard/node_modules (make docker-image runs npm ci)"
  dash=$(mktemp -d) && mkdir -p "$ROOT/build"
  "$NODE" "$HERE/check_dashboard.mjs" "$url" "$run" "$dash" "$ROOT/build/compose-dashboard.png" \
    >"$dash/out" 2>&1 &
  dash_pid=$!
fi
# Until check_dashboard.mjs writes $dash/$1 (fails if it ends first; 300 s hang guard).
dash_wait() {
  local i
  for i in $(seq 1500); do
    [[ -e $dash/$1 ]] && return 0
    kill -0 "$dash_pid" 2>/dev/null || { wait "$dash_pid" || true; dash_pid=""
                                         fail "dashboard: $(tail -n 20 "$dash/out")"; }
    ((i < 1500)) || fail "dashboard: not $1 after 300 s: $(tail -n 20 "$dash/out")"
    sleep 0.2
  done
}
[[ -z $dash ]] || dash_wait ready

# The run's first batch alone, so that the page can find the run and follow it before the
# others are sent.
out=$("$PYTHON" "$HERE/check_service.py" "$url" --run "$run" --cases 1 --big 0 --step0 3000 \
      --seed 9500 2>/dev/null) || fail "first batch: $out"
sent=$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$out")
[[ -z $dash ]] || dash_wait following

# Real batches through $front, 3 clients at once, one run.
pids=() outs=()
for k in 0 1 2; do
  outs+=("$(mktemp)")
  "$PYTHON" "$HERE/check_service.py" "$url" --run "$run" --cases 10 --big 2 \
    --step0 $((k * 1000)) --seed $((9300 + k * 50)) >"${outs[k]}" 2>/dev/null &
  pids+=($!)
done
for k in 0 1 2; do
  wait "${pids[k]}" || fail "client $k: $(cat "${outs[k]}")"
  n=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "${outs[k]}")
  sent=$((sent + n)); rm -f "${outs[k]}"
done
say "$sent batches through $front, every answer equal to the numpy reference"

# Spread over the replicas.
total=0 spread=""
for s in "${replicas[@]}"; do
  c=$($DOCKER logs "$(cname "$s")" 2>/dev/null | grep -c "run=$run " || true)
  ((c > 0)) || fail "$s computed none of the run's batches"
  total=$((total + c)); spread+=" $s=$c"
done
((total == sent)) || fail "the replicas logged $total batches of the run, want $sent"
ups=$($DOCKER logs "$(cname "$front")" 2>/dev/null | grep '/infer' | grep -o '\(upstream\|server\)=[^ ]*' | sort | uniq -c | tr -s ' ' | tr '\n' ';')
say "spread:$spread ($front:$ups)"

# One history, visible through every replica.
if ((shared)); then
  for s in "${replicas[@]}"; do
    got=$(replica_get "$s" "/v1/runs/$run/steps?limit=100000" |
          "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); d=d.get("points",d) if isinstance(d,dict) else d; print(len(d))') ||
      fail "$s: GET /v1/runs/$run/steps"
    ((got == sent)) || fail "$s serves $got points of the run, want $sent"
  done
  say "shared history: each replica serves all $sent points of the run"
fi

if [[ -n $events ]]; then
  for i in $(seq 150); do
    got=$(grep -c '^event: point$' "$events" || true)
    ((got >= sent)) && break
    ((i < 150)) || fail "the stream through $front carried $got of $sent points"
    sleep 0.2
  done
  kill "$events_pid" 2>/dev/null || true
  wait "$events_pid" 2>/dev/null || true
  distinct=$(grep '^data: ' "$events" | "$PYTHON" -c 'import json,sys
print(len({json.loads(l[6:])["step"] for l in sys.stdin}))')
  got=$(grep -c '^event: point$' "$events" || true)
  ((got == sent && distinct == sent)) ||
    fail "the stream through $front carried $got points ($distinct steps), want $sent"
  rm -f "$events"
  say "live across replicas: one stream through $front carried all $sent points, each once"
fi

if [[ -n $dash ]]; then
  echo "$sent" >"$dash/want"
  wait "$dash_pid" || { dash_pid=""; fail "dashboard: $(tail -n 20 "$dash/out")"; }
  dash_pid=""
  say "dashboard through $front, in Chromium: $(tail -n 1 "$dash/out")"
  rm -rf "$dash"
fi

# Prometheus scrapes every replica.
metrics=0
replica_get yololossd-1 /metrics >/dev/null 2>&1 && metrics=1
for i in $(seq 60); do
  t=$(curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/targets" || true)
  states=$("$PYTHON" -c 'import json,sys
try: d=json.loads(sys.argv[1])
except ValueError: sys.exit()
print(" ".join(sorted("%s=%s" % (t["labels"]["instance"], t["health"]) for t in d["data"]["activeTargets"])))' "$t")
  ups=$(grep -o '=up' <<<"$states" | wc -l || true)
  nt=$(wc -w <<<"$states")
  if ((nt == 3)) && { ((metrics == 0)) || ((ups == 3)); } && [[ $states != *unknown* ]]; then break; fi
  ((i < 60)) || fail "Prometheus targets: $states"
  sleep 0.5
done
if ((metrics)); then say "Prometheus: $states"; else
  say "Prometheus: 3 targets ($states); SKIPPED 'up': the daemon has no /metrics yet"; fi

# A replica killed, started again, then all three restarted, under a training loop through
# the front end. A restarted container has a new address: the front end must find it again.
loop_run=$run-failover loop_stop=$(mktemp -u) loop_out=$(mktemp)
"$PYTHON" "$HERE/check_failover.py" "$url" --run "$loop_run" --stop "$loop_stop" \
  >"$loop_out" 2>&1 &
loop_pid=$!
now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }
ip_of() { $DOCKER inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(cname "$1")"; }
# The loop's requests in a replica's access log since a time.
served_since() { { $DOCKER logs --since "$2" "$(cname "$1")" 2>/dev/null || true; } | grep -c "run=$loop_run " || true; }
loop_alive() {
  kill -0 "$loop_pid" 2>/dev/null && return 0
  wait "$loop_pid" || true; loop_pid=""
  sed 's/^/  /' "$loop_out"; fail "the training loop ended early"
}
# Until REPLICA has served some of the loop's requests since TIME (60 s; the front end
# checks readiness every second and asks DNS every second, so this is a hang guard).
wait_served() {
  local end=$((SECONDS + 60))
  while ((SECONDS < end)); do
    (($(served_since "$1" "$2") > 0)) && return 0
    loop_alive
    sleep 0.5
  done
  local c="" s
  for s in "${replicas[@]}"; do c+=" $s=$(served_since "$s" "$2")"; done
  say "FAILED: $1 got none of the loop's requests in 60 s since $3 (since then:$c)"
  loop_report
  exit 1
}
# Stops the loop after its current step and prints what it saw.
loop_report() {
  touch "$loop_stop"
  loop_rc=0; wait "$loop_pid" || loop_rc=$?
  loop_pid=""
  say "what the training loop saw (check_failover.py):"
  sed 's/^/  /' "$loop_out"
  local fl resent=""
  fl=$($DOCKER logs --since "$t0" "$(cname "$front")" 2>/dev/null | grep '/infer' || true)
  [[ $front != haproxy ]] || resent=", $(grep -c ' retries=+\?[1-9]' <<<"$fl" || true) resent to another replica by it"
  say "the front end meanwhile: $(grep -c . <<<"$fl" || true) infer requests$resent, $(grep -Ec '" 5[0-9]{2} in=' <<<"$fl" || true) answered 5xx"
}
wait_healthy() {
  local end=$((SECONDS + 60))
  until $DOCKER healthcheck run "$(cname "$1")" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "$1 not healthy 60 s after $2"
    sleep 0.5
  done
}
t0=$(now) loop_rc=0
for s in "${replicas[@]}"; do wait_served "$s" "$t0" "the loop started"; done
victim=${replicas[0]} old_ip=$(ip_of "${replicas[0]}")
$DOCKER kill --signal KILL "$(cname "$victim")" >/dev/null
t=$(now)
# The others carry the loop meanwhile.
wait_served "${replicas[1]}" "$t" "$victim was killed"
wait_served "${replicas[2]}" "$t" "$victim was killed"
$DOCKER start "$(cname "$victim")" >/dev/null
wait_healthy "$victim" "its start"
wait_served "$victim" "$t" "it was started again"
say "SIGKILL: $victim ($old_ip) killed under the loop, started again ($(ip_of "$victim")), serves again"
for s in "${replicas[@]}"; do
  old_ip=$(ip_of "$s")
  $DOCKER restart -t 60 "$(cname "$s")" >/dev/null
  t=$(now)
  wait_healthy "$s" "its restart"
  wait_served "$s" "$t" "its restart"
  say "restart: $s ($old_ip -> $(ip_of "$s")) serves again"
done
t=$(now) counts=""
for s in "${replicas[@]}"; do wait_served "$s" "$t" "all were restarted"; done
for s in "${replicas[@]}"; do counts+=" $s=$(served_since "$s" "$t0")"; done
loop_report
((loop_rc == 0)) || fail "the training loop saw errors or a wrong history (above)"
say "failover: the loop saw no error, its history holds each step once; every replica serves at the end (loop requests:$counts)"
rm -f "$loop_out" "$loop_stop"

# SIGTERM: each replica drains and exits 0.
for s in "${replicas[@]}"; do
  $DOCKER stop -t 60 "$(cname "$s")" >/dev/null
  code=$($DOCKER inspect --format '{{.State.ExitCode}}' "$(cname "$s")")
  [[ $code == 0 ]] || fail "$s exited $code after SIGTERM"
done
say "SIGTERM: the 3 replicas exited 0"
say "ok"
