#!/usr/bin/env bash
# deploy/image and deploy/seccomp, as they ship: builds the image from
# build/agate and runs it twice with podman, read-only, as its non-root user,
# with all capabilities dropped, in a network namespace of its own:
#   1. with deploy/seccomp/agate.json   -> the start-up line says io_uring
#   2. with podman's default profile    -> epoll (io_uring refused, auto falls back)
# Each time: ready by the image's own HEALTHCHECK (agate --probe), one echo run
# streamed with curl from inside that namespace, `podman stop` (the image's
# STOPSIGNAL) -> exit 0. A machine where podman cannot run a container at all
# fails this check: it does not skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

fail() { echo "image: FAIL: $*" >&2; exit 1; }
for t in podman buildah runc nsenter curl node; do
  command -v "$t" >/dev/null || fail "$t not installed (run deploy/install-deps.sh test as root)"
done

tag=localhost/agate:deploy-check
names=()
cleanup() {
  for n in "${names[@]}"; do podman rm -f "$n" >/dev/null 2>&1 || true; done
  podman rmi -f "$tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# What podman needs on every machine here: runc (crun is not everywhere) and
# explicit limits: podman's default nofile (1048576) is over the hard limit a
# session here has (20000), and runc then fails to set it (EPERM).
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
run_opts=(--pull never --runtime runc --ulimit "nofile=$hard:$hard" --ulimit nproc=4096:4096)

make -s -j2 build/agate

# The shipped profile is still the runtime default plus io_uring.
base=/usr/share/containers/seccomp.json
[ -f "$base" ] || fail "$base missing (golang-github-containers-common)"
node deploy/seccomp/derive.mjs "$base" | cmp -s - deploy/seccomp/agate.json ||
  fail "deploy/seccomp/agate.json differs from 'node deploy/seccomp/derive.mjs $base'"

log=$(mktemp)
deploy/image/build.sh "$tag" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; fail "deploy/image/build.sh"; }
rm -f "$log"

# The image's metadata, as podman or a kubelet reads it.
cfg=$(podman image inspect --format '{{json .Config}}' "$tag")
hc=$(podman image inspect --format '{{json .HealthCheck}}' "$tag" 2>/dev/null || echo null)
node -e '
  const [c, hc] = [JSON.parse(process.argv[1]), JSON.parse(process.argv[2] || "null")];
  const want = (ok, what) => { if (!ok) { console.error(`image: FAIL: ${what}: ${process.argv[1]} ${process.argv[2]}`); process.exit(1); } };
  want(c.User === "65532:65532", "USER 65532:65532");
  want(c.StopSignal === "SIGTERM" || c.StopSignal === "15", "STOPSIGNAL SIGTERM");
  want(c.ExposedPorts && "8080/tcp" in c.ExposedPorts && "9090/tcp" in c.ExposedPorts, "EXPOSE 8080 9090");
  want((c.Env || []).includes("AGATE_CONFIG=/etc/agate/agate.yaml"), "AGATE_CONFIG");
  want(JSON.stringify(c.Entrypoint) === "[\"/agate\"]", "ENTRYPOINT /agate");
  const test = (hc && hc.Test) || (c.Healthcheck && c.Healthcheck.Test) || [];
  want(JSON.stringify(test) === JSON.stringify(["CMD", "/agate", "--probe", "http://127.0.0.1:9090/health/ready"]), "HEALTHCHECK agate --probe");
' "$cfg" "$hc"

run_once() {   # $1: label, $2: expected backend, rest: podman options
  local label=$1 backend=$2 name="agate-check-$$-$1" out pid i line uid sse code
  shift 2
  names+=("$name")
  out=$(podman run -d --name "$name" "${run_opts[@]}" --read-only --cap-drop ALL \
          --security-opt no-new-privileges --network none "$@" "$tag" 2>&1) ||
    fail "podman cannot run a container on this machine ($label): $out"
  pid=$(podman inspect --format '{{.State.Pid}}' "$name")
  [ "${pid:-0}" -gt 0 ] || fail "$label: no process (podman logs: $(podman logs "$name" 2>&1 | tail -5))"

  # Ready, by the image's HEALTHCHECK (agate --probe inside the container).
  for i in $(seq 1 100); do
    podman healthcheck run "$name" >/dev/null 2>&1 && break
    [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] ||
      fail "$label: agate exited before ready: $(podman logs "$name" 2>&1 | tail -5)"
    [ "$i" -lt 100 ] || fail "$label: not ready after 10 s: $(podman logs "$name" 2>&1 | tail -5)"
    sleep 0.1
  done

  uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
  [ "$uid" = 65532 ] || fail "$label: agate runs as uid $uid, not 65532"
  line=$(podman logs "$name" 2>/dev/null | grep '"msg":"listening"' | head -1)
  echo "$line" | grep -q "\"backend\":\"$backend\"" || fail "$label: expected backend $backend in the start-up line: $line"

  # One echo run, paced so that it arrives as a stream, from inside the namespace.
  local body='{"threadId":"t-image","runId":"r-image","state":{},"tools":[],"context":[],"messages":[{"id":"m1","role":"user","content":"hello from the image"}],"forwardedProps":{"agate":{"tokenIntervalMs":20}}}'
  sse=$(nsenter --net="/proc/$pid/ns/net" curl -sS -N --max-time 10 -H 'Content-Type: application/json' \
          -H 'Accept: text/event-stream' --data "$body" http://127.0.0.1:8080/v1/agents/echo/run) ||
    fail "$label: curl to the echo agent failed"
  node -e '
    const ev = process.argv[1].split("\n").filter((l) => l.startsWith("data: ")).map((l) => JSON.parse(l.slice(6)));
    const types = ev.map((e) => e.type);
    const text = ev.filter((e) => e.type === "TEXT_MESSAGE_CONTENT").map((e) => e.delta).join("");
    const bad = (w) => { console.error(`image: FAIL: ${process.argv[2]}: ${w}: ${types.join(",")}`); process.exit(1); };
    if (types[0] !== "RUN_STARTED" || types[types.length - 1] !== "RUN_FINISHED") bad("not a whole run");
    if (types.filter((t) => t === "TEXT_MESSAGE_CONTENT").length < 2) bad("not streamed in deltas");
    if (!text.includes("hello from the image")) bad(`echoed ${JSON.stringify(text)}`);
  ' "$sse" "$label"

  # The image's STOPSIGNAL (SIGTERM): drain, then exit 0.
  podman stop -t 30 "$name" >/dev/null 2>&1 || true   # (no systemd here: podman complains of healthcheck timers)
  code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
  [ "$code" = 0 ] || fail "$label: exit $code after podman stop: $(podman logs "$name" 2>&1 | tail -5)"
  podman logs "$name" 2>/dev/null | grep -q '"msg":"draining"' || fail "$label: no \"draining\" line: not stopped by SIGTERM"
  podman logs "$name" 2>/dev/null | grep -q '"msg":"stopped"' || fail "$label: no \"stopped\" line"
  echo "image: $label: ready (--probe), run streamed, $backend, uid 65532, read-only, SIGTERM -> exit 0"
}

run_once shipped-seccomp io_uring --security-opt "seccomp=$PWD/deploy/seccomp/agate.json"
run_once default-seccomp epoll

# Nothing but agate to run: no shell (asked once podman is known to run this image).
if out=$(podman run --rm "${run_opts[@]}" --network none --entrypoint /bin/sh "$tag" -c true 2>&1); then
  fail "the image has a /bin/sh"
fi
echo "$out" | grep -qi '/bin/sh.*\(no such file\|not found\)' || fail "running /bin/sh failed, but not for want of it: $out"
echo "image: no /bin/sh in the image"
