#!/usr/bin/env bash
# Start the release app under Xvfb and save a PNG of its window.
# Usage: scripts/screenshot.sh OUT.png [DESIGN.json]
# Needs (Debian): xvfb x11-utils imagemagick xdotool mesa-vulkan-drivers libvulkan1
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-netloom.png}
shift || true
shot=${NETLOOM_SHOT_TOOL:-$here/../shared/tools/xvfb-shot}
cargo build --release --manifest-path "$here/Cargo.toml"
# A private data dir: no recovery prompt from an earlier session in the picture.
export XDG_DATA_HOME
XDG_DATA_HOME=$(mktemp -d)
"$shot" "$out" "${NETLOOM_SHOT_WAIT:-8}" Netloom -- "$here/target/release/netloom" "$@"
