#!/usr/bin/env bash
# A jitmux cluster on one machine: three stateless nodes sharing one PostgreSQL
# catalog and one S3 store (SeaweedFS), behind nginx as the load balancer.
# For the cluster tests and for trying multi-node jitmux by hand.
#
#   deploy/cluster.sh start  DIR [BASE_PORT]      (default BASE_PORT 18600)
#   deploy/cluster.sh stop   DIR
#   deploy/cluster.sh node   DIR N start|term|kill (N = 1, 2 or 3)
#   deploy/cluster.sh status DIR
#
# start   creates DIR and a fresh database jitmux_cluster_BASE_PORT (dropped
#         first if it exists), starts SeaweedFS with bucket `jitmux`, node1
#         alone (it runs the catalog migrations), then node2 and node3, then
#         nginx; waits for each to be ready (60 s), writes DIR/env and prints it.
#         On a failure it prints the log tail and exits 1; `stop` cleans up.
# stop    SIGTERM to every node (each drains; SIGKILL after 40 s), stops nginx
#         and SeaweedFS, drops the database. Idempotent; fine after a partial
#         start or with processes already dead.
# node    start: starts node N again with the same flags (log appended), waits
#         until it is ready; term: SIGTERM (drain), returns at once;
#         kill: SIGKILL, returns once the process is gone.
# status  every process, its pid, alive or dead, and each node's /readyz.
#
# Ports (all on 127.0.0.1):
#   BASE_PORT             nginx (the load balancer)
#   BASE_PORT+1 .. +3     node1 .. node3 (`serve --node-name nodeN`)
#   BASE_PORT+10 .. +17   SeaweedFS (S3 on BASE_PORT+10; see scripts/seaweed.sh)
# PostgreSQL at 127.0.0.1:5432, user postgres, trust auth.
#
# Files in DIR:
#   env                 sourceable: JITMUX_CATALOG_URL, JITMUX_STORE, AWS_*,
#                       JITMUX_DATA_DIR (DIR/cli, for the CLI), JITMUX_PUBLIC_URL,
#                       JITMUX_LB, JITMUX_NODES
#   base_port           BASE_PORT of this cluster (read by stop, node, status)
#   jitmux_bin, extra   the binary and CLUSTER_EXTRA of `start`, reused by `node N start`
#   nodeN/              node N's data dir;  nodeN.log, nodeN.pid
#   nginx.conf          generated;  nginx.pid, nginx-error.log, nginx-access.log,
#                       nginx-tmp/ (request bodies buffered before proxying)
#   seaweed/            scripts/seaweed.sh's DIR (weed.log, env, data/)
#
# Environment:
#   JITMUX_BIN      the binary (default: target/release/jitmux of this repository;
#                   `node N start` defaults to the binary `start` used)
#   CLUSTER_EXTRA   extra words appended to every `serve` command line, e.g.
#                   "--ingest-idle-timeout 5 --drain-grace 1" (kept for `node N start`)
# Other JITMUX_* variables of the caller (JITMUX_DRAIN_TIMEOUT, JITMUX_CACHE_BYTES, …)
# reach the nodes too; the catalog, store, data dir and S3 settings are the cluster's.
set -euo pipefail
set +m   # no job control: a background node stays a plain child, so `exec setsid` keeps its pid

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEAWEED=$ROOT/scripts/seaweed.sh
NODES=(1 2 3)
BUCKET=jitmux
PG_ADMIN=(env PGOPTIONS=--client-min-messages=warning psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt)
READY_TIMEOUT=60   # s, for each node and for the load balancer
STOP_TIMEOUT=40    # s a node may drain after SIGTERM before SIGKILL

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

usage() {
  sed -n '6,9p' "$0" | sed 's/^# *//' >&2
  exit 2
}

# The binary: $JITMUX_BIN, else the one DIR's cluster was started with, else
# target/release/jitmux of this repository.
jitmux_bin() {
  local dir=${1:-} bin=${JITMUX_BIN:-}
  if [[ -z $bin && -n $dir && -f $dir/jitmux_bin ]]; then bin=$(<"$dir/jitmux_bin"); fi
  bin=${bin:-$ROOT/target/release/jitmux}
  [[ -x $bin ]] || die "no jitmux binary at $bin: run 'cargo build --release' in $ROOT (or set JITMUX_BIN)"
  bin=$(realpath -s "$bin")
  echo "$bin"
}

# Per-cluster names, from BASE_PORT.
db_name() { echo "jitmux_cluster_$1"; }
catalog_url() { echo "postgres://postgres@127.0.0.1:5432/$(db_name "$1")"; }
node_port() { echo $(($1 + $2)); }

base_port_of() {
  local dir=$1 b
  [[ -f $dir/base_port ]] || return 1
  b=$(<"$dir/base_port")
  [[ $b =~ ^[0-9]+$ ]] || die "bad $dir/base_port"
  echo "$b"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }

# The pid in FILE if that process is alive and its command line contains WORD
# (guards against a stale pid file whose pid was reused).
live_pid() {
  local file=$1 word=$2 pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$word" || return 1
  echo "$pid"
}

# Wait until PID is gone, up to SECS seconds; returns 1 if it is still alive.
wait_gone() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$pid" 2>/dev/null
}

# ---- PostgreSQL -------------------------------------------------------------

drop_db() {
  local db=$1
  "${PG_ADMIN[@]}" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                       WHERE datname = '$db' AND pid <> pg_backend_pid()" >/dev/null
  "${PG_ADMIN[@]}" -c "DROP DATABASE IF EXISTS $db" >/dev/null
}

create_db() {
  local db=$1
  drop_db "$db"
  "${PG_ADMIN[@]}" -c "CREATE DATABASE $db" >/dev/null
}

# ---- nodes ------------------------------------------------------------------

# Start node N of the cluster in DIR (in its own session, pid = the binary's).
spawn_node() {
  local dir=$1 n=$2 base bin extra port pid
  base=$(base_port_of "$dir") || die "$dir is not a cluster directory (no base_port)"
  bin=$(jitmux_bin "$dir")
  extra=$(cat "$dir/extra" 2>/dev/null || true)
  port=$(node_port "$base" "$n")
  [[ -f $dir/seaweed/env ]] || die "$dir/seaweed/env missing: is SeaweedFS running?"
  if pid=$(live_pid "$dir/node$n.pid" "127.0.0.1:$port"); then
    die "node$n is already running (pid $pid)"
  fi
  port_in_use "$port" && die "port $port is in use"
  mkdir -p "$dir/node$n"
  # shellcheck disable=SC2086 # $extra (CLUSTER_EXTRA) is split into words on purpose
  (
    # SeaweedFS's keys, and no other AWS identity of the caller's.
    unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE
    # shellcheck disable=SC1091
    . "$dir/seaweed/env"
    export JITMUX_CATALOG_URL JITMUX_STORE JITMUX_DATA_DIR
    JITMUX_CATALOG_URL=$(catalog_url "$base")
    JITMUX_STORE=s3://$BUCKET
    JITMUX_DATA_DIR=$dir/node$n
    echo "=== $(date -u +%FT%TZ) cluster.sh: starting node$n on 127.0.0.1:$port" >>"$dir/node$n.log"
    exec setsid "$bin" serve --listen "127.0.0.1:$port" --node-name "node$n" $extra \
      </dev/null >>"$dir/node$n.log" 2>&1
  ) &
  echo $! >"$dir/node$n.pid"
}

# Wait until node N answers /readyz with 200; on failure print its log tail, exit 1.
wait_node() {
  local dir=$1 n=$2 base port pid rc t0=$SECONDS
  base=$(base_port_of "$dir")
  port=$(node_port "$base" "$n")
  pid=$(<"$dir/node$n.pid")
  while [[ $(http_code "http://127.0.0.1:$port/readyz") != 200 ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null && rc=0 || rc=$?
      log "node$n (pid $pid) exited during startup (status $rc); tail of $dir/node$n.log:"
      tail -n 30 "$dir/node$n.log" >&2
      exit 1
    fi
    if ((SECONDS - t0 >= READY_TIMEOUT)); then
      log "node$n not ready after ${READY_TIMEOUT}s; tail of $dir/node$n.log:"
      tail -n 30 "$dir/node$n.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  log "node$n ready on http://127.0.0.1:$port (pid $pid)"
}

# SIGTERM every given node, then wait for each (SIGKILL after STOP_TIMEOUT).
stop_nodes() {
  local dir=$1 base n pid
  base=$(base_port_of "$dir") || return 0
  local -A pids=()
  for n in "${NODES[@]}"; do
    if pid=$(live_pid "$dir/node$n.pid" "127.0.0.1:$(node_port "$base" "$n")"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids[$n]=$pid
    fi
  done
  for n in "${!pids[@]}"; do
    pid=${pids[$n]}
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
      log "node$n (pid $pid) still running ${STOP_TIMEOUT}s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 5 || log "node$n (pid $pid) survived SIGKILL"
    fi
    log "node$n stopped"
  done
  for n in "${NODES[@]}"; do rm -f "$dir/node$n.pid"; done
}

# ---- nginx ------------------------------------------------------------------

nginx_bin() {
  command -v nginx 2>/dev/null && return
  [[ -x /usr/sbin/nginx ]] && { echo /usr/sbin/nginx; return; }
  die "nginx not found: apt-get install nginx-light"
}

write_nginx_conf() {
  local dir=$1 base=$2 n user_line=""
  # As root, nginx's workers would run as `nobody`, which may not be allowed to
  # write the temp dirs in DIR: keep them as the user who runs the script.
  if ((EUID == 0)); then user_line="user $(id -un) $(id -gn);"; fi
  {
    cat <<EOF
# Generated by deploy/cluster.sh for the cluster in $dir. deploy/nginx.conf is
# the same load balancer for docker compose.
daemon on;
pid $dir/nginx.pid;
worker_processes 1;
$user_line
error_log $dir/nginx-error.log notice;
# Each proxied connection takes two descriptors (client and node); live viewers stay for hours.
worker_rlimit_nofile 8192;

events {
    worker_connections 4096;
}

http {
    # Which node answered each request, and how long it took.
    log_format cluster '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent '
                       'upstream=\$upstream_addr upstream_status=\$upstream_status '
                       'request_time=\$request_time';
    access_log $dir/nginx-access.log cluster;

    # Temp paths inside DIR, so nginx never touches /var/lib/nginx.
    client_body_temp_path $dir/nginx-tmp/body;
    proxy_temp_path       $dir/nginx-tmp/proxy;
    fastcgi_temp_path     $dir/nginx-tmp/fastcgi;
    uwsgi_temp_path       $dir/nginx-tmp/uwsgi;
    scgi_temp_path        $dir/nginx-tmp/scgi;

    upstream jitmux {
        # Round robin (the default): any node serves any request; no stickiness.
        # max_fails=1 fail_timeout=2s: one failed connect (a killed or drained
        # node) takes the node out for 2 s; then nginx tries it again. nginx
        # (open source) cannot probe /readyz itself: a draining node is avoided
        # because it closes each connection after its response and, after
        # --drain-grace, refuses connections, which proxy_next_upstream retries.
EOF
    for n in "${NODES[@]}"; do
      echo "        server 127.0.0.1:$(node_port "$base" "$n") max_fails=1 fail_timeout=2s;"
    done
    cat <<EOF
        # Idle connections kept open to the nodes (per worker): no TCP connect per request.
        keepalive 32;
    }

    server {
        listen 127.0.0.1:$base;

        location / {
            proxy_pass http://jitmux;

            # HTTP/1.1 with an empty Connection header: needed for the upstream
            # keepalive above (and for chunked quasi-streams and live tails).
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The client's Host including its port: /v1/share builds its URL
            # from it and the web page's sign-in compares it with Origin
            # (\$host would drop the port).
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            # "https" here makes the web page's session cookie Secure.
            proxy_set_header X-Forwarded-Proto \$scheme;

            # Pass response bytes on as the node sends them: a live tail or a
            # quasi-stream would otherwise wait for nginx's buffers to fill
            # (latency) and a download would spill into temp files.
            proxy_buffering off;
            # Read the whole request body before choosing a node (the default,
            # spelled out): an ingest PUT whose node dies can then be sent again
            # to another node. PUT and GET are idempotent, so nginx retries them.
            proxy_request_buffering on;
            # ffmpeg's HLS muxer closes its side of the connection right after a PUT's
            # last byte, without reading the answer; nginx would take that for an
            # abort (499) and never pass the upload on.
            proxy_ignore_client_abort on;
            # An ingest upload (one segment, init or playlist) may be up to
            # 256 MiB (serve --ingest-max-upload); nginx's default is 1 MiB.
            client_max_body_size 256m;

            # Downloads and live tails run for hours, and a live tail may be
            # quiet for a few seconds between segments: nginx's 60 s defaults
            # would cut them.
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            # A node that is down answers a connect at once on a LAN; one that
            # does not answer at all should not hold a request for 60 s.
            proxy_connect_timeout 2s;

            # A refused or reset connection (a killed or drained node), a
            # connect timeout, a 502, or a 503 (catalog or store unavailable on
            # that node) is tried on the next node, at most 3 nodes in all.
            # Only before any byte of the response went to the client.
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
        }
    }
}
EOF
  } >"$dir/nginx.conf"
}

start_nginx() {
  local dir=$1 base=$2 nginx t0=$SECONDS
  nginx=$(nginx_bin)
  write_nginx_conf "$dir" "$base"
  mkdir -p "$dir/nginx-tmp"
  "$nginx" -q -t -p "$dir" -c "$dir/nginx.conf" 2>"$dir/nginx-t.log" \
    || { cat "$dir/nginx-t.log" >&2; die "nginx rejects $dir/nginx.conf"; }
  rm -f "$dir/nginx-t.log"
  "$nginx" -p "$dir" -c "$dir/nginx.conf"
  while [[ $(http_code "http://127.0.0.1:$base/healthz") != 200 ]]; do
    if ((SECONDS - t0 >= READY_TIMEOUT)); then
      log "load balancer not answering /healthz after ${READY_TIMEOUT}s; tail of $dir/nginx-error.log:"
      tail -n 20 "$dir/nginx-error.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  log "load balancer ready on http://127.0.0.1:$base (pid $(<"$dir/nginx.pid"))"
}

stop_nginx() {
  local dir=$1 pid
  if pid=$(live_pid "$dir/nginx.pid" nginx); then
    # QUIT: graceful (open responses finish); live tails would hold it for
    # hours, so TERM after 5 s and KILL after 5 more.
    kill -QUIT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 5; then
      kill -TERM "$pid" 2>/dev/null || true
      wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
    fi
    log "nginx stopped"
  fi
  rm -f "$dir/nginx.pid"
}

# ---- commands ---------------------------------------------------------------

cmd_start() {
  local dir=$1 base=${2:-18600} n p old
  if ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1024 || base + 17 >= 55000)); then
    die "BASE_PORT must be an integer in 1024..54982 (got $base)"
  fi
  jitmux_bin >/dev/null
  nginx_bin >/dev/null
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if old=$(base_port_of "$dir" 2>/dev/null); then
    for n in "${NODES[@]}"; do
      live_pid "$dir/node$n.pid" "127.0.0.1:$(node_port "$old" "$n")" >/dev/null \
        && die "a cluster is running in $dir: run '$0 stop $dir' first"
    done
    live_pid "$dir/nginx.pid" nginx >/dev/null \
      && die "a cluster is running in $dir: run '$0 stop $dir' first"
  fi
  for p in "$base" $((base + 1)) $((base + 2)) $((base + 3)); do
    port_in_use "$p" && die "port $p on 127.0.0.1 is already in use (ports $base..$((base + 3)) and $((base + 10))..$((base + 17)) needed)"
  done
  echo "$base" >"$dir/base_port"
  jitmux_bin >"$dir/jitmux_bin"
  printf '%s\n' "${CLUSTER_EXTRA:-}" >"$dir/extra"
  rm -f "$dir/env"

  log "creating database $(db_name "$base")"
  create_db "$(db_name "$base")"

  "$SEAWEED" start "$dir/seaweed" $((base + 10)) >/dev/null
  "$SEAWEED" mkbucket "$dir/seaweed" "$BUCKET"

  # node1 first and alone: it applies the catalog migrations.
  spawn_node "$dir" 1
  wait_node "$dir" 1
  for n in "${NODES[@]:1}"; do spawn_node "$dir" "$n"; done
  for n in "${NODES[@]:1}"; do wait_node "$dir" "$n"; done

  start_nginx "$dir" "$base"

  local nodes="" aws
  for n in "${NODES[@]}"; do nodes+="${nodes:+ }http://127.0.0.1:$(node_port "$base" "$n")"; done
  aws=$(<"$dir/seaweed/env")
  cat >"$dir/env" <<EOF
export JITMUX_CATALOG_URL=$(catalog_url "$base")
export JITMUX_STORE=s3://$BUCKET
$aws
export JITMUX_DATA_DIR=$dir/cli
export JITMUX_PUBLIC_URL=http://127.0.0.1:$base
export JITMUX_LB=http://127.0.0.1:$base
export JITMUX_NODES="$nodes"
EOF
  cat "$dir/env"
}

cmd_stop() {
  local dir=$1 base
  if [[ ! -d $dir ]]; then
    log "no $dir: nothing to stop"
    return 0
  fi
  dir=$(cd "$dir" && pwd)
  stop_nodes "$dir"
  stop_nginx "$dir"
  if [[ -d $dir/seaweed ]]; then
    "$SEAWEED" stop "$dir/seaweed"
  fi
  if base=$(base_port_of "$dir"); then
    drop_db "$(db_name "$base")"
    log "database $(db_name "$base") dropped"
  fi
  rm -f "$dir/env"
}

cmd_node() {
  local dir=$1 n=$2 action=$3 base pid port
  [[ $n =~ ^[123]$ ]] || die "node number must be 1, 2 or 3 (got $n)"
  dir=$(cd "$dir" 2>/dev/null && pwd) || die "no directory $1"
  base=$(base_port_of "$dir") || die "$dir is not a cluster directory (no base_port)"
  port=$(node_port "$base" "$n")
  case $action in
    start)
      spawn_node "$dir" "$n"
      wait_node "$dir" "$n"
      ;;
    term)
      pid=$(live_pid "$dir/node$n.pid" "127.0.0.1:$port") || die "node$n is not running"
      kill -TERM "$pid"
      log "node$n (pid $pid): SIGTERM sent"
      ;;
    kill)
      pid=$(live_pid "$dir/node$n.pid" "127.0.0.1:$port") || die "node$n is not running"
      kill -KILL "$pid"
      wait_gone "$pid" 5 || die "node$n (pid $pid) still alive after SIGKILL"
      log "node$n (pid $pid): killed"
      ;;
    *) usage ;;
  esac
}

cmd_status() {
  local dir=$1 base n pid port state
  dir=$(cd "$dir" 2>/dev/null && pwd) || die "no directory $1"
  base=$(base_port_of "$dir") || die "$dir is not a cluster directory (no base_port)"
  show() { printf '%-8s %-8s %-6s %s\n' "$@"; }
  show process pid state detail
  if pid=$(live_pid "$dir/nginx.pid" nginx); then state=alive; else pid=$(cat "$dir/nginx.pid" 2>/dev/null || echo -); state=dead; fi
  show nginx "$pid" "$state" "http://127.0.0.1:$base /healthz $(http_code "http://127.0.0.1:$base/healthz")"
  for n in "${NODES[@]}"; do
    port=$(node_port "$base" "$n")
    if pid=$(live_pid "$dir/node$n.pid" "127.0.0.1:$port"); then state=alive; else pid=$(cat "$dir/node$n.pid" 2>/dev/null || echo -); state=dead; fi
    show "node$n" "$pid" "$state" "http://127.0.0.1:$port /readyz $(http_code "http://127.0.0.1:$port/readyz")"
  done
  if pid=$(live_pid "$dir/seaweed/weed.pid" weed); then state=alive; else pid=$(cat "$dir/seaweed/weed.pid" 2>/dev/null || echo -); state=dead; fi
  show seaweed "$pid" "$state" "s3 http://127.0.0.1:$((base + 10))"
  if [[ -n $("${PG_ADMIN[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$(db_name "$base")'" 2>/dev/null) ]]; then
    state=exists; else state=absent; fi
  show catalog - "$state" "$(catalog_url "$base")"
}

case ${1:-} in
  start) (($# == 2 || $# == 3)) || usage; cmd_start "$2" "${3:-}" ;;
  stop) (($# == 2)) || usage; cmd_stop "$2" ;;
  node) (($# == 4)) || usage; cmd_node "$2" "$3" "$4" ;;
  status) (($# == 2)) || usage; cmd_status "$2" ;;
  *) usage ;;
esac
