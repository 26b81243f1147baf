#!/usr/bin/env bash
# The idle designer does not change by itself: start the release binary under
# a virtual X server, take two screenshots 20 s apart and count the pixels
# that differ. Fails when 1% or more differ. Needs Xvfb and ImageMagick
# (apt-get install -y xvfb imagemagick).
#   bash .ci/idle-check.sh [BINARY] [DESIGN]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/netloom}
design=${2:-presets/resnet-mini.json}
display=:${IDLE_DISPLAY:-97}
out=$(mktemp -d)
Xvfb "$display" -screen 0 1440x900x24 >/dev/null 2>&1 &
xvfb=$!
sleep 1
# Its own data folder: no recovery prompt or start page from an earlier session.
env -u WAYLAND_DISPLAY DISPLAY="$display" XDG_RUNTIME_DIR="$out" XDG_DATA_HOME="$out" \
  "$bin" "$design" >"$out/app.log" 2>&1 &
app=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep "${IDLE_SETTLE:-12}"
DISPLAY="$display" import -window root "$out/a.png"
sleep 20
DISPLAY="$display" import -window root "$out/b.png"
differ=$(compare -metric AE "$out/a.png" "$out/b.png" "$out/diff.png" 2>&1 >/dev/null || true)
differ=${differ%% *}
total=$((1440 * 900))
echo "idle check: $differ of $total pixels differ after 20 s ($(awk "BEGIN{printf \"%.4f\", 100*$differ/$total}")%); screenshots in $out"
awk "BEGIN{exit !($differ < 0.01 * $total)}"
