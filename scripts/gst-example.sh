#!/usr/bin/env bash
# The README's gst-launch example: decode a sample, detect (NanoDet), track, draw, and write an MP4.
# Usage: scripts/gst-example.sh [INPUT] [OUTPUT]   (run from the repository root after `make setup`)
set -euo pipefail
cd "$(dirname "$0")/.."
input=${1:-samples/media/vtest.avi}
output=${2:-out/gst-example.mp4}
plugin_dir=${VIGIL_PLUGIN_DIR:-target/release}
[ -f "$plugin_dir/libgstvigil.so" ] || { echo "error: $plugin_dir/libgstvigil.so not built (cargo build --release -p gst-plugin-vigil)" >&2; exit 1; }
[ -f "$input" ] || { echo "error: $input not found (make setup)" >&2; exit 1; }
mkdir -p "$(dirname "$output")"
set -x
GST_PLUGIN_PATH=$plugin_dir gst-launch-1.0 -e \
  filesrc location="$input" ! decodebin ! videoconvert ! \
  vigilinfer model-repository=models model=nanodet threshold=0.4 ! \
  vigiltrack ! vigilosd ! videoconvert ! \
  x264enc speed-preset=superfast ! mp4mux ! filesink location="$output"
set +x
echo "wrote $output"
