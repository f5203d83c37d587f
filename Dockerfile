# syntax=docker/dockerfile:1
#
# Vigil container image: `vigil` (run, serve, check, bench) and the GStreamer plugin libgstvigil.so on
# Debian 12, with the ONNX Runtime shared library. Models and configs are mounted, not baked in.
#
#   docker build -t vigil .                                  # Rust build stage + ORT wheel stage + runtime
#   podman build -t vigil .                                  # the same with podman/buildah
#   docker build -t vigil --build-arg BINARIES=prebuilt .    # binaries built on the host (no Rust image):
#                                                            # target/container/{vigil,libgstvigil.so,libonnxruntime.so.<ORT_VERSION>}
#                                                            # (scripts/container-check.sh fills it)
#
#   docker run --rm -v "$PWD/models:/models:ro" -p 8000-8002:8000-8002 -e VIGIL_SERVE_TOKEN=secret \
#     vigil serve /models --address 0.0.0.0
#   docker run --rm -v "$PWD/models:/models:ro" -v "$PWD/configs:/etc/vigil:ro" -v "$PWD/out:/data" \
#     vigil run /etc/vigil/my-pipeline.yaml
#
# Stages: rust-build (cargo build --release --locked), onnxruntime (the PyPI wheel scripts/setup.sh uses),
# build / prebuilt (the three files under /usr/local of an empty stage, from those two stages or from the
# context), runtime (the final image; the default target). BuildKit (or buildah/podman, which skip unused
# stages) builds only the stages the chosen BINARIES needs.

# Base of the runtime stage (scripts/container-check.sh passes an image imported from debootstrap).
ARG BASE_IMAGE=debian:12-slim
ARG RUST_IMAGE=rust:1.92-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# build: compile in the rust-build stage; prebuilt: take target/container/ from the build context.
ARG BINARIES=build
# Must match ORT_VERSION in scripts/setup.sh and ORT_LIB_NAME in engine/src/runtime.rs
# (scripts/container-check.sh checks both).
ARG ORT_VERSION=1.32.0

# ---------------------------------------------------------------------------------------- rust-build
FROM ${RUST_IMAGE} AS rust-build
# The -dev packages of scripts/setup.sh's step_apt that the crates link against (gstreamer, -base:
# app/video/pbutils, rtsp-server); protobuf is compiled by protox (pure Rust), ONNX Runtime is loaded at
# run time, CUDA/NVML are loaded at run time too: nothing else is needed.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
      pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev; \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The binaries are copied out of the cached target folder within the same RUN; their debug info
# (profile.release has debug = 1) is stripped, which takes vigil from ~170 MB to ~26 MB.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    cargo build --release --locked -p vigil -p gst-plugin-vigil; \
    mkdir -p /out; \
    cp target/release/vigil target/release/libgstvigil.so /out/; \
    strip --strip-debug /out/vigil /out/libgstvigil.so

# --------------------------------------------------------------------------------------- onnxruntime
# The ONNX Runtime library from the PyPI wheel, as scripts/setup.sh step_onnxruntime takes it.
FROM ${PYTHON_IMAGE} AS onnxruntime
ARG ORT_VERSION
RUN set -eux; \
    PIP_DISABLE_PIP_VERSION_CHECK=1 pip download --no-deps --only-binary=:all: -d /whl "onnxruntime==${ORT_VERSION}"; \
    mkdir -p /out; \
    python -c 'import glob, shutil, sys, zipfile; \
name = "onnxruntime/capi/libonnxruntime.so." + sys.argv[1]; \
z = zipfile.ZipFile(glob.glob("/whl/onnxruntime-*.whl")[0]); \
shutil.copyfileobj(z.open(name), open("/out/" + name.rsplit("/", 1)[1], "wb"))' "${ORT_VERSION}"; \
    chmod 755 /out/libonnxruntime.so.*

# ------------------------------------------------------------------------- build / prebuilt binaries
# The three files at their places under /usr/local, so that the runtime stage copies them in one layer.
FROM scratch AS build
COPY --from=rust-build /out/vigil /usr/local/bin/vigil
COPY --from=rust-build /out/libgstvigil.so /usr/local/lib/gstreamer-1.0/libgstvigil.so
COPY --from=onnxruntime /out/ /usr/local/lib/onnxruntime/

# target/container/ holds vigil, libgstvigil.so and libonnxruntime.so.<ORT_VERSION> built on the host
# (Debian 12 with the packages of scripts/setup.sh; scripts/container-check.sh fills it).
FROM scratch AS prebuilt
ARG ORT_VERSION
COPY target/container/vigil /usr/local/bin/vigil
COPY target/container/libgstvigil.so /usr/local/lib/gstreamer-1.0/libgstvigil.so
COPY target/container/libonnxruntime.so.${ORT_VERSION} /usr/local/lib/onnxruntime/libonnxruntime.so.${ORT_VERSION}

FROM ${BINARIES} AS binaries

# ------------------------------------------------------------------------------------------ runtime
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG ORT_VERSION
# The GStreamer run-time packages `vigil run`, `vigil serve` and the elements use
# (scripts/container-check.sh replays this stage, list included, for its chroot fallback):
#   base: videoconvert, videoscale, uridecodebin/decodebin, compositor, videotestsrc, app (libgstapp);
#   good: qtdemux/mp4mux, matroska, rtspsrc + rtp/udp, deinterlace, videoflip, multifilesrc, jpeg/png,
#         souphttpsrc (libsoup is loaded at run time); bad: h264parse, nvcodec (NVDEC/NVENC where a
#         driver is present); ugly: x264enc; libav: the software decoders (avdec_*);
#   libgstrtspserver: vigil's RTSP outputs; gstreamer1.0-tools: gst-inspect-1.0 (the build's plugin
#   check, debugging); ca-certificates: https:// sources and MQTT over TLS with the system roots.
ARG RUNTIME_PACKAGES="\
    ca-certificates \
    gstreamer1.0-tools \
    gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-bad \
    gstreamer1.0-plugins-ugly \
    gstreamer1.0-libav \
    libgstrtspserver-1.0-0 \
    "
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${RUNTIME_PACKAGES}; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log; \
    groupadd --gid 10001 vigil; \
    useradd --uid 10001 --gid 10001 --create-home --home-dir /home/vigil --shell /usr/sbin/nologin vigil; \
    mkdir -p /models /etc/vigil /data; \
    chown vigil:vigil /data

# /usr/local/bin/vigil, /usr/local/lib/gstreamer-1.0/libgstvigil.so, /usr/local/lib/onnxruntime/libonnxruntime.so.*
COPY --from=binaries /usr/local/ /usr/local/

ENV GST_PLUGIN_PATH=/usr/local/lib/gstreamer-1.0 \
    VIGIL_ORT_LIB=/usr/local/lib/onnxruntime/libonnxruntime.so.${ORT_VERSION} \
    ORT_DISABLE_TELEMETRY=1

USER 10001:10001
# Fails the build when the plugin or an element the pipelines use does not load, and leaves
# GStreamer's registry cache in /home/vigil/.cache, so that a container does not scan every plugin
# again at its start. (Not `gst-inspect-1.0 --exists`: it also wants the plugin's version to be at
# least GStreamer's.)
RUN set -eux; \
    for f in vigilinfer vigilsrc vigiltrack vigilosd x264enc avdec_h264 h264parse mp4mux rtspsrc; do \
      gst-inspect-1.0 "$f" >/dev/null; \
    done; \
    vigil --version

# Mount points: /models (model repository), /etc/vigil (configs), /data (working folder, outputs).
WORKDIR /data
# vigil serve: HTTP 8000, gRPC 8001, metrics 8002; vigil run: RTSP 8554, HTTP API 8080.
EXPOSE 8000 8001 8002 8554 8080

ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Vigil video analytics: vigil run (GStreamer pipelines from YAML), vigil serve (Triton's protocol), the libgstvigil GStreamer plugin, ONNX Runtime ${ORT_VERSION} (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/vigil-video/vigil" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.vendor="The Vigil developers" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

ENTRYPOINT ["vigil"]
CMD ["--help"]
