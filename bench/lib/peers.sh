# shellcheck shell=bash disable=SC2034,SC2153,SC2154 # globals shared with bench/run.sh and the cases
# bench/lib/peers.sh: starting, checking and stopping the servers of a bench run
# (agate, nginx, HAProxy, Pushpin) and asking them one request. Sourced by
# bench/run.sh; uses its globals: tmp, pids, AGATE, NGINX, HAPROXY, PUSHPIN, ZURL,
# PUSHPIN_CONF, BENCH_* and BODY_FILE.
#
# Every server listens on 127.0.0.1 only, gets one worker, thread or shard per CPU
# (pinned where the server can pin) and an SO_REUSEPORT listener, and logs nothing
# per request: nginx has access_log off, HAProxy no log lines, Pushpin log_level 0,
# agate AGATE_LOG_REQUESTS=false unless a row says otherwise.

# Server processes by row name: SPID (agate pid, nginx master, haproxy, Pushpin's
# runner), MAINPORT, ADMINPORT (agate only); UPSTREAM_OF: the server behind a proxy
# row, whose CPU the row reports apart ("ups").
declare -A SPID MAINPORT ADMINPORT UPSTREAM_OF

# find_peers: the peers' binaries (NGINX, HAPROXY; PUSHPIN, ZURL and Debian's
# PUSHPIN_CONF when a case uses Pushpin), or die naming what to install.
find_peers() {
  local tool f
  for tool in wrk nginx curl awk; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 ||
      die "$tool not found; run: deploy/install-deps.sh bench"
  done
  NGINX=$(PATH=$PATH:/usr/sbin:/sbin command -v nginx)
  HAPROXY=
  if [ "$BENCH_HAPROXY" = 1 ]; then
    HAPROXY=$(PATH=$PATH:/usr/sbin:/sbin command -v haproxy) ||
      die "haproxy not found; run: deploy/install-deps.sh bench (or BENCH_HAPROXY=0)"
  fi
  PUSHPIN='' ZURL='' PUSHPIN_CONF=''
  if [ "$BENCH_PUSHPIN" = 1 ] && { has_case proxy || has_case streams; }; then
    for tool in pushpin zurl condure; do
      command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found; run: deploy/install-deps.sh bench (Debian 12: apt-get install pushpin condure zurl), or BENCH_PUSHPIN=0"
    done
    PUSHPIN=$(command -v pushpin) ZURL=$(command -v zurl)
    # Debian's pristine config (the one /etc/pushpin/pushpin.conf starts as), else /etc's.
    for f in /usr/share/pushpin/pushpin.conf.condure /etc/pushpin/pushpin.conf; do
      [ -f "$f" ] && { PUSHPIN_CONF=$f; break; }
    done
    [ -n "$PUSHPIN_CONF" ] || die "pushpin.conf not found (/usr/share/pushpin/pushpin.conf.condure, /etc/pushpin/pushpin.conf); reinstall pushpin, or BENCH_PUSHPIN=0"
  fi
  if [ -n "$BENCH_PERF" ] && ! command -v perf >/dev/null 2>&1; then
    die "BENCH_PERF needs perf (apt-get install linux-perf)"
  fi
}
# A private copy of a binary: others may relink it while we run. A copy taken
# mid-link fails --version; wait for the linker and copy again (up to 60 s).
copy_binary() {  # copy_binary FROM TO
  local i
  for i in $(seq 30); do
    if [ -s "$1" ] && cp "$1" "$2" 2>/dev/null && chmod +x "$2" &&
       timeout 5 "$2" --version >/dev/null 2>&1; then
      return 0
    fi
    [ "$i" = 30 ] && die "$1 does not run (being rebuilt?)"
    sleep 2
  done
}

# free_port: sets PORT to a loopback port nobody listens on, at or above
# $BENCH_PORT, not handed out before (a global, not $(...): it must remember).
used_ports=" "
free_port() {
  local p=$BENCH_PORT
  while [[ $used_ports == *" $p "* ]] || (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
    p=$((p + 1))
  done
  used_ports+="$p "
  PORT=$p
}

# wait_http URL PID WHAT [STDERR-FILE]: until URL answers 2xx (at most 10 s) or PID dies.
wait_http() {
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || { [ -n "${4:-}" ] && cat "$4" >&2; die "$3 exited during start-up"; }
    curl -sf -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "$3 not ready at $1 after 10 s"
}

# start_agate NAME STDOUT [VAR=VALUE...]: starts an agate with the built-in defaults,
# request logs off unless a VAR says otherwise, plus the given environment. The
# binary is $AGATE (the copy of build/agate), or $START_BIN when set (the baseline).
start_agate() {
  local name=$1 out=$2; shift 2
  local mport aport
  free_port; mport=$PORT
  free_port; aport=$PORT
  # Start from the built-in defaults: no AGATE_* from the caller's environment.
  local unset_env=() v
  for v in $(compgen -e | grep '^AGATE_' || true); do unset_env+=(-u "$v"); done
  env "${unset_env[@]}" \
    AGATE_LISTEN="127.0.0.1:$mport" AGATE_ADMIN_LISTEN="127.0.0.1:$aport" \
    AGATE_SHARDS="$BENCH_SHARDS" AGATE_LOG_REQUESTS=false "$@" \
    "${START_BIN:-$AGATE}" >"$out" 2>"$tmp/$name.stderr" &
  SPID[$name]=$!
  pids+=("$!")
  MAINPORT[$name]=$mport ADMINPORT[$name]=$aport
  wait_http "http://127.0.0.1:$aport/health/ready" "${SPID[$name]}" "agate ($name)" "$tmp/$name.stderr"
  curl -sf -o /dev/null "http://127.0.0.1:$mport/health/ready" || die "agate ($name) main port not ready"
}

# metric NAME PREFIX...: sum of the samples on that agate's /metrics whose series
# (name and labels) starts with one of the PREFIXes.
metric() {
  local n=$1; shift
  curl -sf "http://127.0.0.1:${ADMINPORT[$n]}/metrics" | awk -v pre="$*" '
    BEGIN { np = split(pre, p, " ") }
    !/^#/ { for (i = 1; i <= np; i++) if (index($1, p[i]) == 1) { s += $NF; break } }
    END { printf "%d", s }'
}

# upstream_clean PREFIX...: after the timing, each PREFIX-proxy agate had no upstream
# failure or retry and each PREFIX-cache agate asked its upstream once (every timed
# request a HIT); a miss sets fail=1.
upstream_clean() {
  local v fl rt up
  for v in "$@"; do
    fl=$(metric "$v-proxy" 'agate_upstream_failures_total')
    rt=$(metric "$v-proxy" 'agate_upstream_retries_total')
    if [ "$fl" != 0 ] || [ "$rt" != 0 ]; then echo "  FAIL  $v-proxy: $fl upstream failures, $rt retries"; fail=1; fi
    up=$(metric "$v-cache" 'agate_upstream_attempts_total')
    [ "$up" = 1 ] || { echo "  FAIL  $v-cache: the upstream was asked $up times (want 1: every timed request a HIT)"; fail=1; }
  done
}

# --- nginx: one instance per role, all with the same process layout ---------------------
case "$BENCH_NGINX_AFFINITY" in auto) NGINX_AFFINITY=auto ;; off|none|"") NGINX_AFFINITY=off ;; *) NGINX_AFFINITY=$BENCH_NGINX_AFFINITY ;; esac
[ "$NGINX_AFFINITY" = off ] && NGINX_AFFINITY_LINE="" || NGINX_AFFINITY_LINE="worker_cpu_affinity $NGINX_AFFINITY;"
# nginx_conf NAME [WORKER_CONNECTIONS]: prints the common part of an nginx.conf up
# to "http {"; the caller adds the server blocks and the closing brace.
nginx_conf() {
  mkdir -p "$tmp/$1-tmp"
  [ "$(id -u)" = 0 ] && echo "user root;"   # workers must read $tmp; as non-root the directive is ignored
  cat <<EOF
worker_processes $(nproc);
$NGINX_AFFINITY_LINE
pid $tmp/$1.pid;
error_log $tmp/$1-error.log warn;
events { worker_connections ${2:-4096}; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 100000;
    client_body_temp_path $tmp/$1-tmp/body;
    proxy_temp_path $tmp/$1-tmp/proxy;
    fastcgi_temp_path $tmp/$1-tmp/fastcgi;
    uwsgi_temp_path $tmp/$1-tmp/uwsgi;
    scgi_temp_path $tmp/$1-tmp/scgi;
    types { }
    default_type text/event-stream;
EOF
}
# start_nginx NAME READY-URL: runs nginx with $tmp/NAME.conf; SPID[NAME] = master.
start_nginx() {
  "$NGINX" -t -q -e "$tmp/$1-error.log" -p "$tmp" -c "$tmp/$1.conf" -g 'daemon off;' ||
    { cat "$tmp/$1-error.log" >&2; die "nginx ($1) config test failed"; }
  "$NGINX" -e "$tmp/$1-error.log" -p "$tmp" -c "$tmp/$1.conf" -g 'daemon off;' &
  SPID[$1]=$!
  pids+=("$!")
  wait_http "$2" "${SPID[$1]}" "nginx ($1)" "$tmp/$1-error.log"
}
# nginx_upstream NAME FILE: an nginx answering POST /agent with FILE's bytes (the
# recorded stream, Content-Length) with open_file_cache, as the upstream of the
# proxy rows; sets UP_PORT. nginx's static handler refuses POST with 405; error_page
# with a URI redirects internally with the method changed to GET (a named location
# would keep POST and 405 again). open_file_cache keeps the upstream's own cost low.
nginx_upstream() {
  free_port; UP_PORT=$PORT
  {
    nginx_conf "$1"
    cat <<EOF
    open_file_cache max=64 inactive=60s;
    open_file_cache_valid 60s;
    server {
        listen 127.0.0.1:$UP_PORT reuseport;
        location = /agent {
            alias $2;
            error_page 405 =200 \$uri;
        }
    }
}
EOF
  } >"$tmp/$1.conf"
  start_nginx "$1" "http://127.0.0.1:$UP_PORT/agent"
}

# --- HAProxy --------------------------------------------------------------------------
# haproxy_conf: the common part of a haproxy.cfg (global and defaults); the
# caller adds its frontends and backends. Threads pinned one per CPU, as nginx's
# workers; no log lines are configured, as nginx has access_log off. maxconn
# stays under the fd limit (haproxy refuses to start when it cannot raise it).
haproxy_conf() {
  local n; n=$(nproc)
  cat <<EOF
global
    nbthread $n
    cpu-map auto:1/1-$n 0-$((n - 1))
    maxconn $(( $(ulimit -n) / 2 - 100 ))
defaults
    mode http
    timeout connect 5s
    timeout client 65s
    timeout server 65s
    timeout http-keep-alive 65s
    option http-keep-alive
    http-reuse always
EOF
}
# start_haproxy NAME READY-URL: runs haproxy -db with $tmp/NAME.cfg; SPID[NAME].
start_haproxy() {
  "$HAPROXY" -c -q -f "$tmp/$1.cfg" >"$tmp/$1.log" 2>&1 ||
    { cat "$tmp/$1.log" >&2; die "haproxy ($1) config check failed"; }
  "$HAPROXY" -db -f "$tmp/$1.cfg" >>"$tmp/$1.log" 2>&1 &
  SPID[$1]=$!
  pids+=("$!")
  wait_http "$2" "${SPID[$1]}" "haproxy ($1)" "$tmp/$1.log"
}
# haproxy_static NAME FILE: a haproxy answering every request with FILE's bytes
# (read once at start-up) as 200 text/event-stream; sets URL.
haproxy_static() {
  free_port
  { haproxy_conf; cat <<EOF
frontend static
    bind 127.0.0.1:$PORT
    http-request return status 200 content-type text/event-stream file $2
EOF
  } >"$tmp/$1.cfg"
  URL="http://127.0.0.1:$PORT/$(basename "$2")"
  start_haproxy "$1" "$URL"
}

# --- Pushpin --------------------------------------------------------------------------
# Debian's runner (`pushpin`) starts condure, pushpin-proxy and pushpin-handler;
# pushpin-proxy asks zurl for every origin request. The runner's own zurl config
# denies 127.* (loopback origins end in "error" after a timeout), so zurl is run
# here with its own config and pushpin-proxy pointed at it.
declare -A PPKIDS   # NAME -> the runner's children (condure, pushpin-proxy, pushpin-handler)
# pushpin_conf NAME PORT ROUTE: writes $tmp/NAME/{pushpin.conf,routes,zurl.conf} for a
# Pushpin on 127.0.0.1:PORT whose routes file is the one line ROUTE. Debian's
# pushpin.conf, with: run and log dirs here, log_level 0, the handler's TCP ports
# moved to free ones, and the [proxy] zurl specs on this instance's zurl.
pushpin_conf() {
  local d=$tmp/$1 p_push p_sub p_http p_cmd
  mkdir -p "$d/run" "$d/log"
  free_port; p_push=$PORT; free_port; p_sub=$PORT; free_port; p_http=$PORT; free_port; p_cmd=$PORT
  cat >"$d/zurl.conf" <<EOF
[General]
in_spec=ipc://$d/run/zurl-in
in_stream_spec=ipc://$d/run/zurl-in-stream
out_spec=ipc://$d/run/zurl-out
defpolicy=allow
allow=
deny=
max_open_requests=$(( 2 * BENCH_STREAMS > 20000 ? 2 * BENCH_STREAMS : 20000 ))
buffer_size=200000
timeout=600
in_hwm=10000
out_hwm=10000
EOF
  printf '%s\n' "$3" >"$d/routes"
  awk -v d="$d" -v port="127.0.0.1:$2" -v prefix="agb$$-" -v p_push="$p_push" -v p_sub="$p_sub" \
      -v p_http="$p_http" -v p_cmd="$p_cmd" '
    BEGIN {
      v["global/rundir"] = d "/run"; v["global/ipc_prefix"] = prefix; v["global/port_offset"] = 0
      v["runner/services"] = "condure,pushpin-proxy,pushpin-handler"; v["runner/http_port"] = port
      v["runner/logdir"] = d "/log"; v["runner/log_level"] = 0
      v["proxy/routesfile"] = d "/routes"; v["proxy/updates_check"] = "off"
      v["handler/push_in_spec"] = "tcp://127.0.0.1:" p_push; v["handler/push_in_sub_specs"] = "tcp://127.0.0.1:" p_sub
      v["handler/push_in_http_port"] = p_http; v["handler/command_spec"] = "tcp://127.0.0.1:" p_cmd
    }
    /^\[[a-z]+\]/ {
      sec = substr($0, 2, index($0, "]") - 2); print
      if (sec == "proxy") {   # this instance'"'"'s zurl, not /var/run/zurl (internal.conf)
        print "zurl_out_specs=ipc://" d "/run/zurl-in"
        print "zurl_out_stream_specs=ipc://" d "/run/zurl-in-stream"
        print "zurl_in_specs=ipc://" d "/run/zurl-out"
      }
      next
    }
    /^[a-z_]+=/ {
      k = sec "/" substr($0, 1, index($0, "=") - 1)
      if (k in v) { print substr(k, index(k, "/") + 1) "=" v[k]; seen[k] = 1; next }
    }
    { print }
    END { for (k in v) if (!(k in seen)) { print "missing key " k > "/dev/stderr"; exit 1 } }' \
    "$PUSHPIN_CONF" >"$d/pushpin.conf" || die "pushpin ($1): $PUSHPIN_CONF does not have the keys this script sets"
}
running() {  # running PID: the process exists and is not a zombie
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
# start_pushpin NAME READY-URL: zurl and the runner with $tmp/NAME's configs; SPID[NAME]
# is the runner, SPID[NAME-zurl] zurl, PPKIDS[NAME] the runner's three services.
start_pushpin() {
  local d=$tmp/$1 k
  "$ZURL" --config="$d/zurl.conf" --loglevel=0 >>"$d/log/zurl.out" 2>&1 &
  SPID[$1-zurl]=$!
  pids+=("$!")
  "$PUSHPIN" --config="$d/pushpin.conf" >>"$d/log/runner.out" 2>&1 &
  SPID[$1]=$!
  pids+=("$!")
  wait_http "$2" "${SPID[$1]}" "pushpin ($1)" "$d/log/runner.out"
  running "${SPID[$1-zurl]}" || { cat "$d/log/zurl.out" >&2; die "zurl ($1) exited"; }
  PPKIDS[$1]=$(pgrep -P "${SPID[$1]}" | tr '\n' ' ' || true)
  [ "$(wc -w <<<"${PPKIDS[$1]}")" = 3 ] ||
    die "pushpin ($1): want condure, pushpin-proxy and pushpin-handler under the runner, found: $(for k in ${PPKIDS[$1]}; do cat "/proc/$k/comm"; done | tr '\n' ' ')"
  for k in ${PPKIDS[$1]}; do pids+=("$k"); done
}
# stop_pushpin NAME: the runner (it stops its services), any service left, then zurl.
stop_pushpin() {
  local k q alive keep=() kids=" ${PPKIDS[$1]} "
  stop_server "$1"
  for k in ${PPKIDS[$1]}; do kill -TERM "$k" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for k in ${PPKIDS[$1]}; do running "$k" && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for k in ${PPKIDS[$1]}; do running "$k" && kill -KILL "$k" 2>/dev/null; done
  for q in "${pids[@]}"; do [[ $kids == *" $q "* ]] || keep+=("$q"); done
  pids=("${keep[@]}")
  PPKIDS[$1]=
  stop_server "$1-zurl"
}

# stop_server NAME: TERM, then KILL after 5 s, and wait (it is this shell's child).
stop_server() {
  local p=${SPID[$1]}
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local q keep=()
  for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  pids=("${keep[@]}")
}

# server_pids NAME: the row's server processes (nginx: master and workers; pushpin:
# the runner, condure, pushpin-proxy, pushpin-handler and zurl).
# shellcheck disable=SC2046,SC2086 # pid lists are split into words on purpose
server_pids() {
  case $1 in
    nginx*|upstream*) echo "${SPID[$1]}" $(pgrep -P "${SPID[$1]}" || true) ;;
    pushpin*) echo "${SPID[$1]}" ${PPKIDS[$1]} "${SPID[$1-zurl]}" ;;
    *) echo "${SPID[$1]}" ;;
  esac
}
# upstream_pids NAME: the processes of the upstream behind a proxy row, else none.
upstream_pids() {
  [ -z "${UPSTREAM_OF[$1]:-}" ] || server_pids "${UPSTREAM_OF[$1]}"
}
# is_agate NAME: the row's server is an agate (it has /metrics on ADMINPORT).
is_agate() { [ -n "${ADMINPORT[$1]:-}" ]; }

# --- one request ------------------------------------------------------------------------
# post URL BODY-OUT HEADERS-OUT: the bench request once; prints "code content-type".
post() {
  curl -s -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
    --data-binary "@$BODY_FILE" -D "$3" -o "$2" -w '%{http_code} %{content_type}' "$1"
}
# wire_bytes URL: bytes of one response on the wire (headers, chunk framing, body).
wire_bytes() {
  curl -s --raw -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
    --data-binary "@$BODY_FILE" -D "$tmp/wire.h" -o "$tmp/wire.b" "$1"
  echo $(( $(wc -c <"$tmp/wire.h") + $(wc -c <"$tmp/wire.b") ))
}
