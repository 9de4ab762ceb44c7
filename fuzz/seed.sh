#!/usr/bin/env bash
# Writes the seed corpora fuzz/corpus/<target>/ from the real segment sets in fixtures/sets/:
# short prefixes of TS segments, init segments, [u16 BE init length][init][segment] pairs,
# playlists, SegmentIndex::encode outputs and SPS NAL units (see seeds/make_seeds.rs).
# The corpus is generated, not committed; running this again adds back any missing seed.
#
# usage: fuzz/seed.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

# A plain (uninstrumented) build: make_seeds is not a fuzz target.
cargo build --quiet --manifest-path "$here/Cargo.toml" --release --features seeds --bin make_seeds
"$here/target/release/make_seeds" "$root/fixtures/sets" "$here/corpus"
