#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets (fuzz/README.md) into fuzz/seeds/<target>/ from the
# repository's configs, model entries, test data and sample media, and from Triton's cases in
# ../shared/conformance/triton when it exists (VIGIL_SHARED overrides the folder; without it the
# repository's files alone are used). Idempotent: the folder is rebuilt from scratch.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=fuzz/seeds
shared=${VIGIL_SHARED:-../shared}
targets=(model_config pipeline_config inspection_rules onnx_io mot image_item api_stream_body)

rm -rf "$out"
for t in "${targets[@]}"; do mkdir -p "$out/$t"; done

# seed TARGET FILE: copies FILE into the target's seeds, named by its content.
seed() {
  local sum
  sum=$(sha1sum "$2" | cut -c1-16)
  cp "$2" "$out/$1/$sum"
}

# seed_text TARGET: the standard input as one seed.
seed_text() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp"
  seed "$1" "$tmp"
  rm -f "$tmp"
}

# --- config.pbtxt: the repository's model entries and Triton's conformance cases.
for f in models/*/config.pbtxt; do seed model_config "$f"; done
if [ -d "$shared/conformance/triton" ]; then
  while IFS= read -r f; do seed model_config "$f"; done < <(
    find "$shared/conformance/triton" -type f \( -name config.pbtxt -o -name '*.pbtxt' \) | sort)
else
  echo "seed.sh: $shared/conformance/triton is absent: config.pbtxt seeds from models/ only" >&2
fi

# --- pipeline YAML and the rules YAML.
for f in configs/*.yaml; do seed pipeline_config "$f"; done
seed inspection_rules configs/inspection/rules.yaml
seed_text inspection_rules <<'EOF'
reference_date: 2026-12-01
lookups:
  lots:
    file: ../../samples/media/inspection/lots.csv
    key: product
    value: lot
fields:
  - name: lot
    pattern: 'LOT\s*:?\s*([A-Z0-9]{6})'
    shape: AA9999
  - name: expiry
    pattern: 'EXP ([0-9-]{10})'
    pick: largest
rules:
  - {name: lot-present, field: lot, present: true}
  - {name: lot-known, field: lot, equals_lookup: {lookup: lots, key_field: product}}
  - {name: fresh, field: expiry, date: {format: '%Y-%m-%d', not_before: reference_date}}
EOF

# --- ONNX: the installed models without their nodes and weights (graph inputs, outputs,
# initializer names and metadata kept), so that seeds stay a few kilobytes, and one small model
# written from scratch, so that the target has a seed without set-up (fuzz/onnx_seeds.py).
for f in models/*/1/model.onnx; do
  [ -f "$f" ] || continue
  tmp=$(mktemp)
  python3 fuzz/onnx_seeds.py slim "$f" "$tmp"
  seed onnx_io "$tmp"
  rm -f "$tmp"
done
tmp=$(mktemp)
python3 fuzz/onnx_seeds.py tiny "$tmp"
seed onnx_io "$tmp"
rm -f "$tmp"
[ -n "$(ls -A "$out/onnx_io")" ]

# --- MOTChallenge: the first lines of the test sequence's ground truth and detections, and the
# whitespace-separated layout.
for f in tests/data/mot/TUD-Campus/*.txt; do
  head -n 30 "$f" | seed_text mot
done
printf '1 1 10.5 20 30 40 1 -1 -1 -1\n1 2 50 60 10 10 0.5\n2 1 11 21 30 40 1\n' | seed_text mot

# --- image items: the sample images scaled down to a few dozen pixels, as PNG (RGB, RGBA,
# grey, 16-bit grey) and JPEG, and one cut short (GStreamer is a set-up package).
if command -v gst-launch-1.0 >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  n=0
  for img in samples/media/bus.jpg samples/media/zidane.jpg samples/media/box.png samples/media/imageTextN.png; do
    [ -f "$img" ] || continue
    for enc in "RGB ! pngenc" "RGBA ! pngenc" "GRAY8 ! pngenc" "GRAY16_BE ! pngenc" "I420 ! jpegenc quality=60"; do
      n=$((n + 1))
      fmt=${enc%% *}
      gst-launch-1.0 -q filesrc location="$img" ! decodebin ! videoconvert ! videoscale \
        ! "video/x-raw,width=$((16 + n % 5 * 8)),height=$((16 + n % 3 * 8)),format=$fmt" \
        ! videoconvert ! ${enc#* ! } ! filesink location="$tmp/$n" >/dev/null 2>&1 || continue
      seed image_item "$tmp/$n"
    done
  done
  if [ -f "$tmp/5" ]; then
    head -c 200 "$tmp/5" | seed_text image_item
  fi
  rm -rf "$tmp"
else
  echo "seed.sh: gst-launch-1.0 is missing (make setup): no image seeds" >&2
fi

# --- POST /streams bodies (docs/openapi.yaml), against configs/traffic.yaml's plan.
seed_text api_stream_body <<<'{"name": "gate-3", "uri": "rtsp://127.0.0.1:8554/stream1"}'
seed_text api_stream_body <<<'{"name": "cam2", "uri": "../samples/media/vtest.avi", "loop": true, "decoder": "cpu"}'
seed_text api_stream_body <<<'{"name": "cam3", "uri": "rtsp://127.0.0.1/x", "rtsp_transport": "tcp", "latency_ms": 200, "reconnect": {"interval_ms": 500, "max_interval_ms": 4000, "attempts": -1}}'
seed_text api_stream_body <<<'{"name": "items", "images": {"path": "../samples/media/inspection/items/*.png", "sort": "mtime", "fps": 5, "output": {"width": 640, "height": 480}}}'
seed_text api_stream_body <<<'{"name": "door", "uri": "file:///tmp/vigil-fuzz-api_stream_body/samples/media/bikes.mp4", "drop_frame_interval": 2, "analytics": {"anchor": "bottom-center", "hysteresis": 4, "forget_after": 30, "lines": [{"name": "walkway", "points": [[10, 200], [600, 220]], "labels": ["person"], "in_direction": "right"}], "zones": [{"name": "lobby", "polygon": [[0, 0], [100, 0], [100, 100]], "labels": ["person", "car"], "overcrowded_above": 3}]}}'

for t in "${targets[@]}"; do
  printf '%-18s %3d seeds\n' "$t" "$(find "$out/$t" -type f | wc -l)"
done

# --- dictionaries (committed; rebuilt here so that they follow the schema and the docs):
# config.pbtxt field and enum names from the proto, YAML keys from the configuration references.
mkdir -p fuzz/dicts
dict() {
  # libFuzzer's dictionary syntax: one quoted entry a line, \ and " as hex escapes.
  sort -u | awk 'length($0) > 0' | sed -e 's/\\/\\x5C/g' -e 's/"/\\x22/g' -e 's/.*/"&"/'
}
{
  sed -nE 's/^\s*(repeated\s+|optional\s+)?(map<[^>]+>|[A-Za-z_.]+)\s+([a-z_0-9]+)\s*=\s*[0-9]+.*/\3/p' \
    modelrepo/proto/model_config.proto
  sed -nE 's/^\s*([A-Z][A-Z_0-9]+)\s*=\s*[0-9]+;.*/\1/p' modelrepo/proto/model_config.proto
  printf '%s\n' '{' '}' '[' ']' ': ' '"' '#' 'true' 'false' '-1' 'onnxruntime' 'onnxruntime_onnx' \
    'tensorrt_plan' 'ensemble' 'model.onnx'
} | dict >fuzz/dicts/pbtxt.dict
yaml_keys() {
  grep -oE '`[a-z][][a-z0-9_.-]*`' "$@" | tr -d '`' | tr '.' '\n' | sed -E 's/\[[a-z0-9]*\]//g'
}
{
  yaml_keys configs/README.md | sed 's/$/: /'
  yaml_keys configs/README.md
  printf '%s\n' '- ' '[' ']' '{' '}' ', ' '&a ' '*a' '!!str ' '"' "'" '|' '>' '---' '~' 'null' 'true' '1e9' '-1'
} | dict >fuzz/dicts/yaml.dict
{
  yaml_keys docs/inspection.md | sed 's/$/: /'
  yaml_keys docs/inspection.md
  printf '%s\n' '- ' '[' ']' '{' '}' ', ' '&a ' '*a' '"' "'" '^' '$' '(' ')' '\s*' '[A-Z]' '{2}' '%Y-%m-%d'
} | dict >fuzz/dicts/rules.dict
wc -l fuzz/dicts/*.dict
