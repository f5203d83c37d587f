#!/usr/bin/env bash
# The media zoo: the kinds of files users point Vigil at, generated with ffmpeg from the sample clips
# (tests/tests/media_zoo.rs runs every one through `vigil run`; README "Real-world media").
#
#   scripts/media-zoo.sh OUT_DIR [MEDIA_DIR]
#
# MEDIA_DIR (default samples/media) must hold bikes.mp4 (H.264 640x272, 25 fps) and vtest.avi
# (MS-MPEG4v3 768x576, 10 fps), and may hold Megamind.avi (Debian opencv-doc: MPEG-4 Part 2 with
# B-frames in packed bitstream, XVID fourcc), which is then copied in as it is. Clips are short (2–3 s) to
# keep the test bounded. Deterministic for one ffmpeg build: fixed encoder settings, single-threaded
# encoders, seeded corruption. Writes OUT_DIR/manifest.tsv: file, kind (`good`, `broken`, `no-video`),
# what it is.
set -euo pipefail

OUT=${1:?usage: scripts/media-zoo.sh OUT_DIR [MEDIA_DIR]}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MEDIA=${2:-$REPO/samples/media}
BIKES=$MEDIA/bikes.mp4
VTEST=$MEDIA/vtest.avi
for f in "$BIKES" "$VTEST"; do
  [ -s "$f" ] || { echo "media-zoo: $f is missing (run scripts/setup.sh media)" >&2; exit 1; }
done
command -v ffmpeg >/dev/null || { echo "media-zoo: ffmpeg is not installed (scripts/setup.sh apt)" >&2; exit 1; }

mkdir -p "$OUT"
TMP=$(mktemp -d "$OUT/.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
MANIFEST=$TMP/manifest.tsv
: >"$MANIFEST"

# ffmpeg with the options every encode shares: quiet, no audio unless asked, reproducible.
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
# 2 s of bikes (50 frames) starting at 1 s: cars and cyclists in every frame.
CLIP=(-ss 1 -t 2 -i "$BIKES" -an)
X264=(-c:v libx264 -preset veryfast -threads 1 -pix_fmt yuv420p)
add() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$MANIFEST"; }

# --- H.264 in the usual containers
ff "${CLIP[@]}" "${X264[@]}" -profile:v baseline "$TMP/h264_baseline.mp4"
add h264_baseline.mp4 good "H.264 constrained baseline in MP4"
ff "${CLIP[@]}" "${X264[@]}" -profile:v main -bf 3 "$TMP/h264_main_bframes.mp4"
add h264_main_bframes.mp4 good "H.264 main, 3 B-frames, in MP4"
ff "${CLIP[@]}" "${X264[@]}" -profile:v high -bf 2 "$TMP/h264_high.mp4"
add h264_high.mp4 good "H.264 high in MP4"
ff "${CLIP[@]}" "${X264[@]}" -g 10 -movflags frag_keyframe+empty_moov+default_base_moof "$TMP/h264_fragmented.mp4"
add h264_fragmented.mp4 good "H.264 in fragmented MP4 (a fragment per key frame)"
ff "${CLIP[@]}" "${X264[@]}" -bf 2 "$TMP/h264.mkv"
add h264.mkv good "H.264 with B-frames in Matroska"
ff "${CLIP[@]}" "${X264[@]}" -bf 2 -f mpegts "$TMP/h264.ts"
add h264.ts good "H.264 with B-frames in MPEG-TS"
ff "${CLIP[@]}" "${X264[@]}" -bf 2 -bsf:v h264_mp4toannexb -f h264 "$TMP/h264_annexb.h264"
add h264_annexb.h264 good "raw H.264 Annex-B elementary stream with B-frames (no container timestamps)"

# --- H.265
X265=(-c:v libx265 -preset ultrafast -x265-params log-level=error:pools=1:frame-threads=1 -pix_fmt yuv420p)
ff "${CLIP[@]}" "${X265[@]}" -tag:v hvc1 "$TMP/h265.mp4"
add h265.mp4 good "H.265 in MP4 (hvc1)"
ff "${CLIP[@]}" "${X265[@]}" "$TMP/h265.mkv"
add h265.mkv good "H.265 in Matroska"

# --- older and other codecs
ff "${CLIP[@]}" -c:v mpeg4 -vtag XVID -bf 2 -q:v 4 -threads 1 "$TMP/mpeg4_bframes_xvid.avi"
add mpeg4_bframes_xvid.avi good "MPEG-4 Part 2 with B-frames in AVI (XVID fourcc, DTS only)"
ff "${CLIP[@]}" -c:v mpeg4 -vtag DX50 -bf 1 -q:v 6 -threads 1 "$TMP/mpeg4_divx.avi"
add mpeg4_divx.avi good "MPEG-4 Part 2 with B-frames in AVI (DX50 fourcc)"
ff "${CLIP[@]}" -c:v mjpeg -q:v 5 -pix_fmt yuvj420p "$TMP/mjpeg.avi"
add mjpeg.avi good "Motion JPEG in AVI"
ff "${CLIP[@]}" -c:v mpeg2video -bf 2 -q:v 4 -threads 1 -f mpegts "$TMP/mpeg2.ts"
add mpeg2.ts good "MPEG-2 video with B-frames in MPEG-TS"
ff "${CLIP[@]}" -c:v libvpx -b:v 800k -threads 1 -deadline realtime -cpu-used 8 "$TMP/vp8.webm"
add vp8.webm good "VP8 in WebM"
ff "${CLIP[@]}" -c:v libvpx-vp9 -b:v 800k -threads 1 -deadline realtime -cpu-used 8 -row-mt 0 "$TMP/vp9.webm"
add vp9.webm good "VP9 in WebM"
if gst-inspect-1.0 av1dec >/dev/null 2>&1 || gst-inspect-1.0 dav1ddec >/dev/null 2>&1; then
  ff "${CLIP[@]}" -c:v libaom-av1 -cpu-used 8 -row-mt 0 -threads 1 -b:v 600k -usage realtime "$TMP/av1.mkv"
  add av1.mkv good "AV1 in Matroska"
fi
ff -t 5 -i "$VTEST" -an -c:v copy "$TMP/msmpeg4v3.avi"
add msmpeg4v3.avi good "MS-MPEG4v3 (DivX 3) in AVI, 10 fps"

# --- timing, geometry and sampling oddities
# Variable frame rate: frame n at n*40 ms + 10 ms on odd frames (intervals 50, 30, 50, 30… ms).
ff "${CLIP[@]}" -vf "setpts=(N*0.04+0.01*mod(N\,2))/TB" -fps_mode passthrough "${X264[@]}" "$TMP/vfr.mkv"
add vfr.mkv good "variable frame rate (50/30 ms alternating) H.264 in Matroska"
# Odd sizes: 321x241 in VP9 (4:2:0 with odd dimensions) and in H.264 High 4:4:4 (4:2:0 H.264 cannot be odd).
ff "${CLIP[@]}" -vf scale=321:241 -c:v libvpx-vp9 -b:v 400k -threads 1 -deadline realtime -cpu-used 8 -row-mt 0 "$TMP/odd_321x241.webm"
add odd_321x241.webm good "odd size 321x241 VP9 4:2:0 in WebM"
ff "${CLIP[@]}" -vf scale=321:241 -c:v libx264 -preset veryfast -threads 1 -pix_fmt yuv444p "$TMP/odd_321x241_444.mp4"
add odd_321x241_444.mp4 good "odd size 321x241 H.264 High 4:4:4 in MP4"
# Anamorphic: 480x272 stored, 4:3 pixels (shown 640x272).
ff "${CLIP[@]}" -vf "scale=480:272,setsar=4/3" "${X264[@]}" "$TMP/anamorphic_par4x3.mp4"
add anamorphic_par4x3.mp4 good "non-square pixels (PAR 4:3) H.264 in MP4"
# As a phone stores it: the picture turned 90° counter-clockwise in the pixels, and a display matrix
# turning it 90° clockwise back (players show the street upright, 640x272).
ff "${CLIP[@]}" -vf transpose=2 "${X264[@]}" "$TMP/.rot.mp4"
ff -i "$TMP/.rot.mp4" -c copy -metadata:s:v:0 rotate=90 "$TMP/rotated_90.mp4"
rm -f "$TMP/.rot.mp4"
add rotated_90.mp4 good "phone clip: 272x640 pixels with a 90° rotation in its metadata, H.264 in MP4"
# Interlaced (top field first, field-coded macroblocks), as broadcast and older cameras send it.
ff "${CLIP[@]}" -vf "scale=720:576,setfield=tff" "${X264[@]}" -flags +ildct+ilme -x264opts interlaced=1:tff=1 -f mpegts "$TMP/interlaced.ts"
add interlaced.ts good "interlaced (TFF) H.264 720x576 in MPEG-TS"
ff "${CLIP[@]}" -c:v libx265 -preset ultrafast -x265-params log-level=error:pools=1:frame-threads=1 -pix_fmt yuv420p10le -tag:v hvc1 "$TMP/hevc_10bit.mp4"
add hevc_10bit.mp4 good "10-bit 4:2:0 H.265 Main10 in MP4"
ff "${CLIP[@]}" -c:v libx264 -preset veryfast -threads 1 -pix_fmt yuv420p10le -profile:v high10 "$TMP/h264_10bit.mkv"
add h264_10bit.mkv good "10-bit 4:2:0 H.264 High10 in Matroska"
# A camera that switches from 640x272 to 320x136 in one MPEG-TS (same codec, new SPS).
ff -ss 1 -t 1.2 -i "$BIKES" -an "${X264[@]}" -bsf:v h264_mp4toannexb -f mpegts "$TMP/.a.ts"
ff -ss 2.2 -t 1.2 -i "$BIKES" -an -vf scale=320:136 "${X264[@]}" -bsf:v h264_mp4toannexb -f mpegts -output_ts_offset 1.2 "$TMP/.b.ts"
cat "$TMP/.a.ts" "$TMP/.b.ts" >"$TMP/resolution_change.ts"
rm -f "$TMP/.a.ts" "$TMP/.b.ts"
add resolution_change.ts good "MPEG-TS whose H.264 stream switches from 640x272 to 320x136"

# --- the real one: Debian opencv-doc's Megamind.avi (XVID, packed B-frames, DTS only)
if [ -s "$MEDIA/Megamind.avi" ]; then
  cp "$MEDIA/Megamind.avi" "$TMP/megamind_xvid_packed.avi"
  add megamind_xvid_packed.avi good "Debian opencv-doc Megamind.avi: XVID with packed B-frames, 270 frames"
fi

# --- broken files
# Truncated at 50 %: the MP4 with its index first (a recording cut short), and a transport stream.
ff "${CLIP[@]}" "${X264[@]}" -movflags +faststart "$TMP/.full.mp4"
head -c $(( $(stat -c %s "$TMP/.full.mp4") / 2 )) "$TMP/.full.mp4" >"$TMP/truncated_50.mp4"
rm -f "$TMP/.full.mp4"
add truncated_50.mp4 broken "H.264 MP4 (index first) cut at 50 % of its bytes"
head -c $(( $(stat -c %s "$TMP/h264.ts") / 2 / 188 * 188 + 100 )) "$TMP/h264.ts" >"$TMP/truncated_50.ts"
add truncated_50.ts broken "H.264 MPEG-TS cut at 50 %, mid-packet"
# One bit flipped in 1 % of the 188-byte packets (seeded), past the first 20 (tables and first key frame).
python3 - "$TMP/h264.ts" "$TMP/bitflips_1pct.ts" <<'EOF'
import random, sys
data = bytearray(open(sys.argv[1], "rb").read())
rng = random.Random(16)
packets = len(data) // 188
for p in range(20, packets):
    if rng.random() < 0.01:
        byte = p * 188 + rng.randrange(4, 188)
        data[byte] ^= 1 << rng.randrange(8)
open(sys.argv[2], "wb").write(data)
EOF
add bitflips_1pct.ts broken "H.264 MPEG-TS with one bit flipped in 1 % of its packets"
if [ -s "$MEDIA/Megamind_bugy.avi" ]; then
  cp "$MEDIA/Megamind_bugy.avi" "$TMP/megamind_bugy.avi"
  add megamind_bugy.avi broken "Debian opencv-doc Megamind_bugy.avi: damaged XVID AVI"
fi
: >"$TMP/zero_bytes.mp4"
add zero_bytes.mp4 no-video "an empty file"
ff -f lavfi -i "sine=frequency=440:duration=2" -c:a aac -b:a 64k "$TMP/audio_only.mp4"
add audio_only.mp4 no-video "AAC audio only, no video track"
printf 'This is not a video.\nIt only has a .mp4 name.\n' >"$TMP/text_named.mp4"
add text_named.mp4 no-video "a text file named .mp4"

mv "$MANIFEST" "$TMP/manifest.tsv.done"
for f in "$TMP"/*; do
  [ "$f" = "$TMP/manifest.tsv.done" ] || mv -f "$f" "$OUT/"
done
mv -f "$TMP/manifest.tsv.done" "$OUT/manifest.tsv"
echo "media-zoo: $(wc -l <"$OUT/manifest.tsv") files in $OUT"
