#!/usr/bin/env bash
# .ci/steps/container.sh — build the Dockerfile and check the running container (one CI pass/fail).
#
#  1. try-dockerfile.sh (shared/container/): offline podman build against the local
#     node:20-bookworm-slim, run, wait for /health, run the image's HEALTHCHECK -> PASS/FAIL.
#  2. Our own container from that image (DIAG_TASKS=1, a random free host port):
#     - time from `podman run` to GET /ready 200 and to a healthy HEALTHCHECK (printed);
#     - POST /api/tasks/echo round-trips, served by the container's own Python workers
#       (the pids in /api/queue-stats are python3 processes inside the container);
#     - every process in the container runs as a non-root uid;
#     - `podman stop` (SIGTERM via tini) while a 1 s diag.work call is in flight: /ready turns
#       503 while it drains, the call gets 200, the container exits 0 well inside the stop
#       timeout (not SIGKILLed), the log shows every worker exiting before "stopped", and none
#       of the worker processes is left.
#  1b. `node dist/server.js --check` in the image exits 0 and lists the tasks (README's pre-flight).
#  3. The container is removed; the image and its build cache are kept (a warm run takes ~15 s).
#
# Where the podman tooling comes from: $PYFLEET_CONTAINER_TOOLS, else <repo>/../shared/container
# (CI's fresh clone has shared/ beside it), else /work/shared/container. It needs root (rootful podman).
# When it is missing, or we are not root: under CI=true this step FAILS (the container is part of
# what CI checks, a silent pass would hide a broken Dockerfile); outside CI it prints SKIP and passes.
# PYFLEET_SKIP_CONTAINER=1 skips explicitly (prints SKIP, passes).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)
T0=$(date +%s)
STOP_TIMEOUT_S=30          # what we give `podman stop`; SHUTDOWN_GRACE_MS is 10 s
READY_WAIT_S=60

say() { echo "container: $*"; }
fail() { echo "container: FAIL: $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
unavailable() {
  if [ "${CI:-}" = true ]; then fail "$* (CI=true: the container check cannot be skipped here; PYFLEET_SKIP_CONTAINER=1 to skip on purpose)"; fi
  say "SKIP: $* (outside CI this is not a failure)"
  exit 0
}

[ "${PYFLEET_SKIP_CONTAINER:-0}" = 1 ] && { say "SKIP: PYFLEET_SKIP_CONTAINER=1"; exit 0; }

TOOLS=""
for dir in ${PYFLEET_CONTAINER_TOOLS:-} "$ROOT/../shared/container" /work/shared/container; do
  if [ -f "$dir/try-dockerfile.sh" ] && [ -f "$dir/podman-env.sh" ]; then TOOLS=$(cd "$dir" && pwd); break; fi
done
[ -n "$TOOLS" ] || unavailable "no shared/container/try-dockerfile.sh (looked in \$PYFLEET_CONTAINER_TOOLS, $ROOT/../shared/container, /work/shared/container)"
[ "$(id -u)" = 0 ] || unavailable "not root: the podman set-up in $TOOLS is rootful"
command -v curl >/dev/null || unavailable "curl is missing"
say "tooling: $TOOLS"

# podman + runc (installed from apt if missing) and CONTAINERS_CONF for this kind of machine
# shellcheck disable=SC1091
. "$TOOLS/podman-env.sh"
command -v podman >/dev/null || unavailable "podman could not be installed"

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# ---- 1. build + run + health check with the shared script ------------------------------------
# The Dockerfile's FROM names its base through an ARG (NODE_IMAGE), which try-dockerfile.sh does not
# recognise as node:20-bookworm-slim, so it would not build the local stand-in on a fresh machine:
# make sure it exists (make-base-image.sh does nothing when it does).
bash "$TOOLS/make-base-image.sh" || fail "could not build the local node:20-bookworm-slim base image"
HOST_PORT=$(free_port) WAIT_S=90 bash "$TOOLS/try-dockerfile.sh" "$ROOT" 5000 || fail "try-dockerfile.sh did not PASS"
# try-dockerfile.sh tags the image localhost/try-<basename of the dir>:latest
IMAGE=localhost/try-$(basename "$ROOT" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_.\n-' '-'):latest
podman image exists "$IMAGE" || fail "image $IMAGE not found after the build"
SIZE=$(podman image inspect "$IMAGE" --format '{{.Size}}')
say "image $IMAGE: $(numfmt --to=si --suffix=B "$SIZE" 2>/dev/null || echo "$SIZE bytes")"

# ---- 1b. README's pre-flight: `--check` in the image starts the workers and prints the task table
CHECK_OUT=$(podman run --rm "$IMAGE" node dist/server.js --check 2>&1); CHECK_RC=$?
if [ "$CHECK_RC" = 0 ] && grep -q 'and 4 workers started with /usr/bin/python3' <<<"$CHECK_OUT"; then
  say "ok: --check in the image: $(grep -c 'timeout .* ms' <<<"$CHECK_OUT") tasks listed, exit 0"
else
  echo "$CHECK_OUT" | tail -20; fail "node dist/server.js --check in the image (exit $CHECK_RC)"
fi

# ---- 2. our own container ------------------------------------------------------------------
NAME=pyfleet-ci-$$
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
WORK=$(mktemp -d /tmp/pyfleet-container.XXXXXX)
CURL_PID=""
cleanup() {
  [ -n "$CURL_PID" ] && kill "$CURL_PID" 2>/dev/null
  podman rm -f "$NAME" >/dev/null 2>&1
  rm -rf "$WORK"
  say "done in $(( $(date +%s) - T0 ))s"
}
trap cleanup EXIT
dump_logs() { echo "--- podman logs $NAME (last 40 lines)"; podman logs "$NAME" 2>&1 | grep -v 'systemd' | tail -40 | cut -c1-400; echo "---"; }
check() { if eval "$1"; then say "ok: $2"; else dump_logs; fail "$2"; fi; }

R0=$(now_ms)
podman run -d --name "$NAME" -p "127.0.0.1:$PORT:5000" -e DIAG_TASKS=1 --stop-timeout "$STOP_TIMEOUT_S" "$IMAGE" \
  >"$WORK/run.log" 2>&1 || { cat "$WORK/run.log"; fail "podman run failed"; }
READY_MS=""
while [ $(( $(now_ms) - R0 )) -lt $(( READY_WAIT_S * 1000 )) ]; do
  state=$(podman inspect "$NAME" --format '{{.State.Status}}' 2>/dev/null)
  [ "$state" = running ] || { dump_logs; fail "container is '$state' before it was ready"; }
  if [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "$BASE/ready")" = 200 ]; then READY_MS=$(( $(now_ms) - R0 )); break; fi
  sleep 0.1
done
[ -n "$READY_MS" ] || { dump_logs; fail "GET /ready not 200 within ${READY_WAIT_S}s"; }
HEALTHY_MS=""
for _ in $(seq 1 30); do
  podman healthcheck run "$NAME" >/dev/null 2>&1
  if [ "$(podman inspect "$NAME" --format '{{.State.Health.Status}}' 2>/dev/null)" = healthy ]; then HEALTHY_MS=$(( $(now_ms) - R0 )); break; fi
  sleep 0.5
done
[ -n "$HEALTHY_MS" ] || { dump_logs; fail "HEALTHCHECK never healthy"; }
say "time from podman run: /ready 200 after ${READY_MS} ms, HEALTHCHECK healthy after ${HEALTHY_MS} ms"

# -- a task call through the container's own workers
BODY='{"hello":"container","n":[1,2.5,null,true],"s":"é€"}'
code=$(curl -s -o "$WORK/echo" -w '%{http_code}' -m 10 -X POST -H 'content-type: application/json' --data-binary "$BODY" "$BASE/api/tasks/echo")
check '[ "$code" = 200 ] && [ "$(cat "$WORK/echo")" = "$BODY" ]' "POST /api/tasks/echo -> $code, same value back"
curl -s -m 5 -o "$WORK/stats" "$BASE/api/queue-stats" || fail "GET /api/queue-stats"
podman top "$NAME" pid,user,args >"$WORK/top" 2>&1 || { cat "$WORK/top"; fail "podman top"; }
check 'node -e '\''
  const fs = require("fs")
  const stats = JSON.parse(fs.readFileSync(process.argv[1], "utf8"))
  const top = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/))
  const python = new Set(top.filter((f) => f.slice(2).join(" ").includes("python3 -m pyfleet")).map((f) => Number(f[0])))
  const workers = stats.workers.map((w) => w.pid)
  const ok = stats.tasks.completed >= 1 && workers.length === 4 && python.size === 4 && workers.every((p) => python.has(p))
  if (!ok) console.error("queue-stats workers", workers, "python3 in the container", [...python], "completed", stats.tasks.completed)
  process.exit(ok ? 0 : 1)'\'' "$WORK/stats" "$WORK/top"' \
  "the call ran on one of the container's 4 python3 -m pyfleet workers (pids in /api/queue-stats = python3 processes in the container)"

# -- non-root: every process in the container (tini, node, python3 workers) and the exec user
uids=$(podman exec "$NAME" sh -c 'for s in /proc/[0-9]*/status; do awk "/^Uid:/{print \$2\",\"\$3}" "$s" 2>/dev/null; done' | sort -u | tr '\n' ' ')
check '[ -n "$uids" ] && ! echo " $uids" | grep -qE "(^| )0,|,0( |$)"' "processes run as non-root uid(s) (real,effective): $uids"
check '[ "$(podman exec "$NAME" id -u)" != 0 ]' "podman exec runs as uid $(podman exec "$NAME" id -u) ($(podman exec "$NAME" id -un))"

# -- graceful stop with a call in flight
podman top "$NAME" hpid,args 2>/dev/null | awk '/python3 -m pyfleet/{print $1}' >"$WORK/hpids"
check '[ "$(wc -l <"$WORK/hpids")" = 4 ]' "4 worker processes on the host: $(tr '\n' ' ' <"$WORK/hpids")"
curl -s -o "$WORK/diag" -w '%{http_code}' -m 20 -X POST -H 'content-type: application/json' \
  --data-binary '{"sleep_ms":1000}' "$BASE/api/tasks/diag.work" >"$WORK/diag.code" 2>&1 &
CURL_PID=$!
inflight=no
for _ in $(seq 1 40); do   # up to 2 s for the call to reach a worker
  if curl -s -m 2 "$BASE/api/queue-stats" | grep -q '"borrowed":1'; then inflight=yes; break; fi
  sleep 0.05
done
check '[ "$inflight" = yes ]' "diag.work {sleep_ms: 1000} is running on a worker"
S0=$(now_ms)
podman stop -t "$STOP_TIMEOUT_S" "$NAME" >"$WORK/stop.log" 2>&1 &
STOP_PID=$!
drain=""
for _ in $(seq 1 50); do   # while the call drains, /ready must say 503
  c=$(curl -s -o "$WORK/ready" -w '%{http_code}' -m 1 "$BASE/ready")
  if [ "$c" != 200 ]; then drain="$c $(cat "$WORK/ready" 2>/dev/null)"; break; fi
  sleep 0.05
done
wait "$STOP_PID" || { cat "$WORK/stop.log"; fail "podman stop failed"; }
STOP_MS=$(( $(now_ms) - S0 ))
check '[ "${drain%% *}" = 503 ]' "GET /ready during the drain: ${drain:-always 200}"
wait "$CURL_PID"; CURL_PID=""
diag_code=$(cat "$WORK/diag.code")
check '[ "$diag_code" = 200 ] && grep -q "\"slept_ms\":1000" "$WORK/diag"' "in-flight diag.work finished during shutdown: $diag_code $(cat "$WORK/diag")"
exit_code=$(podman inspect "$NAME" --format '{{.State.ExitCode}}')
check '[ "$exit_code" = 0 ]' "container exited with code $exit_code"
check '[ "$STOP_MS" -lt $(( STOP_TIMEOUT_S * 1000 - 5000 )) ]' "podman stop (SIGTERM) took ${STOP_MS} ms, well inside its ${STOP_TIMEOUT_S} s timeout (no SIGKILL)"
podman logs "$NAME" 2>/dev/null | grep '^{' >"$WORK/app.log"
check 'grep -q "\"signal\":\"SIGTERM\"" "$WORK/app.log"' "Node got the SIGTERM (through tini)"
check '[ "$(grep -c "\"msg\":\"worker exited\"" "$WORK/app.log")" -ge 4 ] && ! grep "\"msg\":\"worker exited\"" "$WORK/app.log" | grep -qv "\"exitCode\":0"' \
  "all 4 workers exited with code 0 when the server stopped them"
# (ordered by the lines' own "time": the pool's lines may reach the log after "stopped")
check 'node -e '\''
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n")
    .map((l) => { try { return JSON.parse(l) } catch { return { msg: "", time: 0 } } })
  const stopped = lines.find((l) => l.msg === "stopped")
  const exits = lines.filter((l) => l.msg === "worker exited")
  const ok = stopped !== undefined && !lines.some((l) => /did not finish in time/.test(l.msg)) &&
    exits.length >= 4 && exits.every((l) => l.time <= stopped.time) && lines.every((l) => l.time <= stopped.time)
  process.exit(ok ? 0 : 1)'\'' "$WORK/app.log"' "the server logged \"stopped\" last, after every worker had exited (clean drain)"
left=""
while read -r hpid; do
  [ -n "$hpid" ] && grep -qa pyfleet "/proc/$hpid/cmdline" 2>/dev/null && left="$left $hpid"
done <"$WORK/hpids"
check '[ -z "$left" ]' "no worker process left on the host${left:+:$left}"
say "PASS (image $(numfmt --to=si --suffix=B "$SIZE" 2>/dev/null || echo "$SIZE bytes"), ready in ${READY_MS} ms, healthy in ${HEALTHY_MS} ms, stop with a 1 s call in flight ${STOP_MS} ms)"
