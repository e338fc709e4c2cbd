#!/usr/bin/env bash
# make test-metrics-promtool: start the daemon, record points of a few runs (names with
# quotes, backslashes, slashes), scrape /metrics and lint it with `promtool check metrics`.
set -euo pipefail
daemon=${YL_DAEMON:-build/yololossd}
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$daemon" --host 127.0.0.1 --port 0 --threads 2 --history "$tmp/h.sqlite" >/dev/null 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/err" && break; sleep 0.05; done
port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$tmp/err")
for run in 'plain' 'with "quotes"' 'back\slash' 'a/b'; do
  python3 - "$run" > "$tmp/req.json" <<'PY'
import json, random, sys
random.seed(7)
inputs = [{"name": f"output_{l}", "datatype": "FP32", "shape": [1, g, g, 18],
           "data": [round(random.uniform(-2, 2), 3) for _ in range(g * g * 18)]}
          for l, g in enumerate([2, 4])]
inputs.append({"name": "boxes", "datatype": "FP32", "shape": [1, 1, 5], "data": [8, 8, 40, 50, 0]})
print(json.dumps({"inputs": inputs, "parameters": {"run": sys.argv[1]}, "outputs": [{"name": "loss"}]}))
PY
  curl -sf -o /dev/null -d @"$tmp/req.json" "http://127.0.0.1:$port/v2/models/yolov3-tiny/infer"
done
curl -sf -o /dev/null -d '{}' "http://127.0.0.1:$port/v2/models/yolov3/infer" || true
curl -sf "http://127.0.0.1:$port/metrics" > "$tmp/metrics"
grep -q 'yololoss_run_loss{run="with \\"quotes\\"",term="total"}' "$tmp/metrics"
promtool check metrics < "$tmp/metrics"
echo "test-metrics-promtool: $(grep -vc '^#' "$tmp/metrics") samples, promtool ok"
