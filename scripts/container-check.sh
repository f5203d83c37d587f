#!/usr/bin/env bash
# Builds and runs the container image of the Dockerfile on a machine that has no container registry
# (only Debian's package mirror), step by step, printing what each step did and how long it took.
#
#   scripts/container-check.sh          (as root: apt-get, debootstrap, chroot, mounts)
#
# a. build    cargo build --release -p vigil -p gst-plugin-vigil (nice; an up-to-date build is reused),
#             then target/container/ = vigil + libgstvigil.so (debug info stripped) + the ONNX Runtime
#             library of .vigil/onnxruntime (scripts/setup.sh onnxruntime): the Dockerfile's
#             BINARIES=prebuilt context. Checks that the Dockerfile's ORT_VERSION is setup.sh's and
#             engine/src/runtime.rs's.
# b. tools    apt-get install (only what is missing) debootstrap, buildah, podman, crun, runc, conmon, uidmap,
#             fuse-overlayfs, slirp4netns, containernetworking-plugins, catatonit, curl, binutils.
# c. base     debootstrap --variant=minbase bookworm into ~/.cache/vigil/container/rootfs-bookworm with
#             the Debian mirror of this machine's apt configuration (read at run time), made "slim" as
#             Debian's official images are (dpkg path excludes, apt clean-up) and given this machine's
#             bookworm apt sources; imported with buildah (from scratch + copy + commit) as
#             localhost/debian:12-slim. Both are reused when present.
# d. image    buildah bud --isolation chroot --storage-driver vfs --layers --build-arg
#             BASE_IMAGE=localhost/debian:12-slim --build-arg BINARIES=prebuilt --target runtime ->
#             localhost/vigil:check (its apt-get install reaches the mirror from inside the build);
#             prints the image's size (and its gzip-compressed size, as it would travel to a registry).
# e. run      podman run --network host --read-only (as deploy/k8s runs it; the image's own USER), first
#             adapting to what the machine refuses (each refusal is printed with its error): limits
#             podman asks for above the hard limits are asked at or below them, crun refusing hybrid
#             cgroups is replaced by runc. Then: vigil --version; gst-inspect-1.0 vigilinfer;
#             `vigil serve /models` (a repository with NanoDet) on a free 127.0.0.1 port,
#             GET /v2/health/ready from the host must be 200, the process's uid (from the host's /proc
#             and `podman exec id`) must be 10001, SIGTERM must end it with 0; `vigil run` of a generated
#             config (samples/media/bikes.mp4, 250 frames, NanoDet + SORT, MP4 + JSON events) must exit 0
#             with an MP4 and 250 events.
# f. fallback when the builder (d) or the runtime (e) is refused, the same checks run in a root
#             folder with unshare + chroot --userspec=10001:10001: the built image's files (buildah
#             mount) when only the runtime was refused; otherwise a copy of the debootstrap root into
#             which the Dockerfile's runtime stage is replayed (its ARG/RUN/COPY/ENV/USER/WORKDIR
#             instructions, parsed from the Dockerfile, so the package list cannot drift).
#             VIGIL_CONTAINER_ROUTE=mount forces the first (after the image build), =chroot the second
#             (no image build), =image forbids the fallback.
# The output names the route used and quotes each refusal's error text; logs go to
# ~/.cache/vigil/container/logs/. Exit status 0 only when every check of the route used passed.
#
# Time on the 2-core development machine (measured 2026-12-07): from an empty cache ~7 min after the
# release build (which takes 4-5 min when only the workspace crates are compiled again, 10+ min from
# nothing): tools 25 s, debootstrap + import 40-65 s, image build ~2.5 min (186 MB of packages
# downloaded inside the build), run checks ~1.5 min; again with new binaries ~4 min (the package layer
# comes from buildah's cache, vfs copies the rest), with nothing changed ~2.5 min. Disk: ~2.3 GB of vfs storage (a full
# copy of the tree per layer) + ~0.8 GB for the rootfs and the fallback root.
#
# Environment:
#   VIGIL_CACHE              cache folder (default ~/.cache/vigil); this script uses $VIGIL_CACHE/container
#   VIGIL_ORT_DIR            where libonnxruntime is (default <repo>/.vigil/onnxruntime)
#   VIGIL_CONTAINER_ROUTE    auto (default), image (no fallback), mount or chroot (a fallback only, see f.)
#   VIGIL_CONTAINER_NO_BUILD 1: skip cargo, use target/release as it is
#   VIGIL_CONTAINER_REBUILD  1: debootstrap, import and build again from scratch
set -euo pipefail
shopt -s inherit_errexit

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${VIGIL_CACHE:-$HOME/.cache/vigil}
CDIR=$CACHE/container
LOGS=$CDIR/logs
ORT_DIR=${VIGIL_ORT_DIR:-$REPO/.vigil/onnxruntime}
ROUTE=${VIGIL_CONTAINER_ROUTE:-auto}
CTX=$REPO/target/container
SUITE=bookworm
ROOTFS=$CDIR/rootfs-$SUITE
FBROOT=$CDIR/fallback-root
WORK=$CDIR/work
BASE_IMAGE=localhost/debian:12-slim
IMAGE=localhost/vigil:check
SERVE_CTR=vigil-check-serve
VIGIL_UID=10001
TOOLS=(debootstrap buildah podman crun runc conmon uidmap fuse-overlayfs slirp4netns containernetworking-plugins catatonit
  curl binutils)
# vfs: no overlay mounts needed (works where overlayfs or fuse is refused); separate storage under the cache.
STORAGE=(--root "$CDIR/storage" --runroot "$CDIR/run" --storage-driver vfs)

export DEBIAN_FRONTEND=noninteractive
[ -d "$HOME/.cargo/bin" ] && PATH=$HOME/.cargo/bin:$PATH

# ---------------------------------------------------------------------------------------------- helpers

T0=$SECONDS
STEP_T=$SECONDS
SUMMARY=()
REFUSED=()
say() { printf 'container-check: %s\n' "$*"; }
die() {
  printf 'container-check: error: %s\n' "$*" >&2
  exit 1
}
step() {
  STEP_T=$SECONDS
  printf '\n== %s\n' "$*"
}
# done_step TEXT: one summary line with the step's time.
done_step() {
  local line
  line=$(printf '%-8s %s (%ss)' "$1" "$2" $((SECONDS - STEP_T)))
  say "$line"
  SUMMARY+=("$line")
}
# refused WHAT LOG: record a refusal with its error text (the log's last meaningful lines).
refused() {
  local text
  text=$(grep -v '^\s*$' "$2" | grep -iE 'error|denied|not permitted|refused|fail|cannot|unable|invalid' | tail -n 4 || true)
  [ -n "$text" ] || text=$(tail -n 4 "$2")
  REFUSED+=("$1: $text")
  printf 'container-check: REFUSED or FAILED: %s\n--- %s (last lines) ---\n' "$1" "$2" >&2
  tail -n 25 "$2" >&2
  printf -- '---\n' >&2
}
# logged NAME CMD...: run a command with its output appended to $LOGS/NAME.log.
logged() {
  local log=$LOGS/$1.log
  shift
  printf '\n$ %s\n' "$*" >>"$log"
  "$@" >>"$log" 2>&1
}
buildah_() { buildah "${STORAGE[@]}" "$@"; }
podman_() { podman "${STORAGE[@]}" --cgroup-manager cgroupfs --events-backend file "$@"; }
human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }
pkg_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# The Debian mirror of this machine's apt configuration: the first enabled deb source whose suites
# include $SUITE (deb822 *.sources files, then one-line sources.list files).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ") && uri != "") { print uri; found = 1; exit } }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); types = suites = uri = enabled = ""; next }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      END { if (!found) flush() }' "$f"
  done | head -n 1 | grep . && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) { print $i; exit } }' | grep .
}

# This machine's apt sources for $SUITE, $SUITE-updates and $SUITE-security (deb822), for the rootfs.
apt_sources_deb822() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() { if (keep && block != "") printf "%s\n", block; block = ""; keep = 0 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { block = block $0 "\n" }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i ~ ("^" suite "(-updates|-security)?$")) keep = 1 }
      END { flush() }' "$f"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) ~ ("^" suite "(-updates|-security)?$")) { printf "Types: deb\nURIs: %s\nSuites: %s\nComponents:", $i, $(i + 1); for (j = i + 2; j <= NF; j++) printf " %s", $j; printf "\n\n" } }'
}

# dockerfile_stage STAGE [NAME=VALUE...]: a stage of the Dockerfile as tab-separated instructions
# (ARG NAME VALUE, RUN SCRIPT, COPY FROM-STAGE SRC DEST (FROM-STAGE -: the build context),
# ENV NAME VALUE, USER SPEC, WORKDIR DIR), with ${VAR} expanded from the ARG defaults and the NAME=VALUE
# overrides (--build-arg). Other instructions are left out (LABEL, EXPOSE, ENTRYPOINT, CMD).
dockerfile_stage() {
  python3 - "$REPO/Dockerfile" "$@" <<'PY'
import re, shlex, sys
path, stage, *overrides = sys.argv[1:]
over = dict(o.split("=", 1) for o in overrides)
lines, cur = [], ""
for raw in open(path):
    s = raw.rstrip("\n")
    if not cur and (s.lstrip().startswith("#") or not s.strip()):
        continue
    if cur and s.lstrip().startswith("#"):
        continue  # a comment line inside a continued instruction
    if s.endswith("\\"):
        cur += s[:-1]
        continue
    lines.append(cur + s)
    cur = ""
glob_args, args, env, out, in_stage, seen_from = {}, {}, {}, [], False, False
def expand(v, scope):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: scope.get(m.group(1) or m.group(2), m.group(0)), v)
for line in lines:
    word, _, rest = line.strip().partition(" ")
    word, rest = word.upper(), rest.strip()
    if word == "FROM":
        seen_from = True
        in_stage = bool(re.search(r"\bAS\s+" + re.escape(stage) + r"\s*$", rest, re.I))
        args = {}
        continue
    if word == "ARG":
        name, eq, val = rest.partition("=")
        val = shlex.split(val)[0] if val.strip() else ""
        if not seen_from:
            glob_args[name] = over.get(name, val)
            continue
        if not in_stage:
            continue
        args[name] = over.get(name, val if eq else glob_args.get(name, ""))
        out.append(("ARG", name, args[name]))
        continue
    if not in_stage:
        continue
    scope = {**args, **env}
    if word == "RUN":
        out.append(("RUN", rest))
    elif word == "COPY":
        parts = shlex.split(rest)
        src_stage = "-"
        while parts[0].startswith("--"):
            if parts[0].startswith("--from="):
                src_stage = parts[0].split("=", 1)[1]
            parts.pop(0)
        if len(parts) != 2:
            sys.exit(f"dockerfile_stage: COPY with other than one source and one destination: {line}")
        out.append(("COPY", src_stage, expand(parts[0], scope), expand(parts[1], scope)))
    elif word == "ENV":
        for kv in shlex.split(rest):
            k, _, v = kv.partition("=")
            env[k] = expand(v, scope)
            out.append(("ENV", k, env[k]))
    elif word in ("USER", "WORKDIR"):
        out.append((word, expand(rest, scope)))
for row in out:
    print("\t".join(x.replace("\t", " ") for x in row))
PY
}

# descendant PID NAME: the first process below PID (at any depth) whose command name is NAME.
descendant() {
  local p
  for p in $(ps -o pid= --ppid "$1"); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]; then
      echo "$p"
      return 0
    fi
    descendant "$p" "$2" && return 0
  done
  return 1
}

# A free TCP port P on 127.0.0.1 with P+1 and P+2 free too (HTTP, gRPC, metrics).
free_ports() {
  local p used
  used=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
  for p in $(seq 18000 3 18600); do
    if ! grep -qxE "$p|$((p + 1))|$((p + 2))" <<<"$used"; then
      echo "$p"
      return
    fi
  done
  die "no three free ports between 18000 and 18602"
}

# wait_ready URL SECONDS: poll until the URL answers 200; prints the last status and the time taken.
wait_ready() {
  local url=$1 deadline=$((SECONDS + $2)) code=000 t0=$EPOCHREALTIME
  while [ $SECONDS -lt $deadline ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
  done
  awk -v c="$code" -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { printf "%s after %.1f s", c, a - b }'
}

# ---------------------------------------------------------------------------------------------- a. build

step_build() {
  step "a. build: release binaries and the prebuilt context folder $(realpath --relative-to="$REPO" "$CTX")/"
  local df_ort setup_ort engine_ort
  df_ort=$(sed -n 's/^ARG ORT_VERSION=//p' "$REPO/Dockerfile")
  setup_ort=$(sed -n 's/^ORT_VERSION=//p' "$REPO/scripts/setup.sh")
  engine_ort=$(sed -n 's/^pub const ORT_LIB_NAME: &str = "libonnxruntime.so.\(.*\)";/\1/p' "$REPO/engine/src/runtime.rs")
  [ "$df_ort" = "$setup_ort" ] && [ "$df_ort" = "$engine_ort" ] ||
    die "ONNX Runtime versions differ: Dockerfile $df_ort, scripts/setup.sh $setup_ort, engine/src/runtime.rs $engine_ort"
  ORT_VERSION=$df_ort
  say "ONNX Runtime $ORT_VERSION in the Dockerfile, scripts/setup.sh and engine/src/runtime.rs"

  local what
  if [ "${VIGIL_CONTAINER_NO_BUILD:-0}" = 1 ]; then
    what="cargo skipped (VIGIL_CONTAINER_NO_BUILD=1)"
  else
    say "cargo build --release --locked -p vigil -p gst-plugin-vigil (nice; log: $LOGS/cargo.log)"
    : >"$LOGS/cargo.log"
    if (cd "$REPO" && nice -n 10 cargo build --release --locked -p vigil -p gst-plugin-vigil) >>"$LOGS/cargo.log" 2>&1; then
      if grep -q '^ *Compiling ' "$LOGS/cargo.log"; then
        what="cargo compiled $(grep -c '^ *Compiling ' "$LOGS/cargo.log") crate(s) in $(sed -n 's/.*Finished .* in //p' "$LOGS/cargo.log")"
      else
        what="cargo: up to date"
      fi
      # Another build of this tree held the lock (cargo waits for it; the time is in the step's).
      ! grep -q 'Blocking waiting for file lock' "$LOGS/cargo.log" || what="$what (after waiting for another cargo's lock on target/)"
    else
      tail -n 30 "$LOGS/cargo.log" >&2
      die "cargo build failed (log: $LOGS/cargo.log)"
    fi
  fi
  local f src dst copied=()
  mkdir -p "$CTX"
  for f in vigil libgstvigil.so; do
    src=$REPO/target/release/$f
    dst=$CTX/$f
    [ -s "$src" ] || die "$src missing"
    if [ -s "$dst" ] && [ "$dst" -nt "$src" ]; then
      continue
    fi
    objcopy --strip-debug "$src" "$dst.tmp" && mv -f "$dst.tmp" "$dst"
    copied+=("$f")
  done
  local ort_src=$ORT_DIR/libonnxruntime.so.$ORT_VERSION
  if [ ! -s "$ort_src" ]; then
    say "$ort_src missing: scripts/setup.sh onnxruntime"
    "$REPO/scripts/setup.sh" onnxruntime
  fi
  if ! cmp -s "$ort_src" "$CTX/libonnxruntime.so.$ORT_VERSION"; then
    install -m 755 "$ort_src" "$CTX/libonnxruntime.so.$ORT_VERSION"
    copied+=("libonnxruntime.so.$ORT_VERSION")
  fi
  # Nothing else may lie there: the prebuilt stage copies the whole folder.
  find "$CTX" -mindepth 1 -maxdepth 1 ! -name vigil ! -name libgstvigil.so ! -name "libonnxruntime.so.$ORT_VERSION" -exec rm -rf {} +
  local sizes
  sizes=$(cd "$CTX" && for f in *; do printf '%s %s, ' "$f" "$(human "$(stat -c %s "$f")")"; done)
  if [ ${#copied[@]} -eq 0 ]; then
    what="$what; target/container up to date (${sizes%, })"
  else
    what="$what; copied ${copied[*]} (${sizes%, })"
  fi
  done_step "build" "$what"
}

# ---------------------------------------------------------------------------------------------- b. tools

step_tools() {
  step "b. tools: ${TOOLS[*]}"
  local missing=() p
  for p in "${TOOLS[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    done_step "tools" "all ${#TOOLS[@]} installed - skipped ($(buildah --version | cut -d' ' -f1-3), $(podman --version))"
    return
  fi
  say "apt-get install ${missing[*]} (log: $LOGS/apt.log)"
  logged apt apt-get install -y --no-install-recommends "${missing[@]}" ||
    { logged apt apt-get update && logged apt apt-get install -y --no-install-recommends "${missing[@]}"; } ||
    { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get install failed"; }
  done_step "tools" "installed ${missing[*]}"
}

# ---------------------------------------------------------------------------------------------- c. base

image_exists() { buildah_ inspect --type image "$1" >/dev/null 2>&1; }
image_label() { buildah_ inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null; }
image_size() { podman_ image inspect --format '{{.Size}}' "$1" 2>/dev/null || echo 0; }

step_base() {
  step "c. base: debootstrap --variant=minbase $SUITE, imported as $BASE_IMAGE"
  local what mirror
  if [ "${VIGIL_CONTAINER_REBUILD:-0}" = 1 ] && [ -z "${REBUILT:-}" ]; then
    REBUILT=1
    say "VIGIL_CONTAINER_REBUILD=1: removing the rootfs, the fallback root and the image storage"
    buildah_ rm --all >/dev/null 2>&1 || true
    rm -rf "$ROOTFS" "$ROOTFS.tmp" "$FBROOT" "$CDIR/storage" "$CDIR/run"
  fi
  if [ -f "$ROOTFS/.vigil-rootfs" ]; then
    what="rootfs $ROOTFS present ($(du -sh --apparent-size "$ROOTFS" | cut -f1)) - skipped"
  else
    mirror=$(apt_mirror) || die "no enabled deb source for $SUITE in /etc/apt/sources.list(.d)"
    say "debootstrap --variant=minbase $SUITE $ROOTFS <the $SUITE mirror of /etc/apt> (log: $LOGS/debootstrap.log)"
    rm -rf "$ROOTFS.tmp"
    if ! logged debootstrap debootstrap --variant=minbase "$SUITE" "$ROOTFS.tmp" "$mirror"; then
      tail -n 20 "$LOGS/debootstrap.log" >&2
      die "debootstrap failed"
    fi
    # As Debian's official -slim images: no documentation, man pages or translations from later
    # installs, apt's caches cleaned after each install, indexes kept compressed.
    cat >"$ROOTFS.tmp/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$ROOTFS.tmp/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'Acquire::Languages "none";\n' >"$ROOTFS.tmp/etc/apt/apt.conf.d/docker-no-languages"
    printf 'Acquire::GzipIndexes "true";\n' >"$ROOTFS.tmp/etc/apt/apt.conf.d/docker-gzip-indexes"
    printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$ROOTFS.tmp/etc/apt/apt.conf.d/docker-autoremove-suggests"
    # This machine's bookworm sources (main, updates, security) instead of debootstrap's one line.
    local sources
    sources=$(apt_sources_deb822)
    if [ -n "$sources" ]; then
      printf '%s\n' "$sources" >"$ROOTFS.tmp/etc/apt/sources.list.d/debian.sources"
      rm -f "$ROOTFS.tmp/etc/apt/sources.list"
    fi
    find "$ROOTFS.tmp/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    find "$ROOTFS.tmp/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$ROOTFS.tmp"/usr/share/man/* "$ROOTFS.tmp"/usr/share/info/* "$ROOTFS.tmp"/usr/share/locale/* \
      "$ROOTFS.tmp"/var/cache/apt/*.bin "$ROOTFS.tmp"/var/cache/apt/archives/*.deb "$ROOTFS.tmp"/var/lib/apt/lists/* \
      "$ROOTFS.tmp"/var/log/* "$ROOTFS.tmp"/tmp/* "$ROOTFS.tmp/etc/hostname" "$ROOTFS.tmp/etc/resolv.conf"
    date -u +%FT%TZ >"$ROOTFS.tmp/.vigil-rootfs"
    mv "$ROOTFS.tmp" "$ROOTFS"
    # The image made from an older rootfs, and the fallback root copied from it, are out of date.
    buildah_ rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
    rm -rf "$FBROOT"
    what="rootfs $ROOTFS made ($(du -sh --apparent-size "$ROOTFS" | cut -f1))"
  fi
  local stamp
  stamp=$(cat "$ROOTFS/.vigil-rootfs")
  if image_exists "$BASE_IMAGE" && [ "$(image_label "$BASE_IMAGE" org.vigil.rootfs)" = "$stamp" ]; then
    what="$what; image $BASE_IMAGE present - skipped"
  else
    say "buildah from scratch + copy + commit -> $BASE_IMAGE (log: $LOGS/import.log)"
    local ctr mnt
    : >"$LOGS/import.log"
    ctr=$(buildah_ from --name vigil-check-base scratch 2>>"$LOGS/import.log") || {
      buildah_ rm vigil-check-base >/dev/null 2>&1 || true
      ctr=$(buildah_ from --name vigil-check-base scratch 2>>"$LOGS/import.log")
    } || { refused "buildah from scratch" "$LOGS/import.log"; return 1; }
    if mnt=$(buildah_ mount "$ctr" 2>>"$LOGS/import.log"); then
      tar -C "$ROOTFS" --numeric-owner --exclude=./.vigil-rootfs --exclude='./dev/*' -cf - . | tar -C "$mnt" --numeric-owner -xpf -
      buildah_ unmount "$ctr" >/dev/null
    else
      # buildah mount refused: copy the rootfs in as a tar archive (buildah add unpacks it).
      refused "buildah mount (base import, falling back to buildah add)" "$LOGS/import.log"
      tar -C "$ROOTFS" --numeric-owner --exclude=./.vigil-rootfs --exclude='./dev/*' -cf "$CDIR/rootfs.tar" .
      logged import buildah_ add "$ctr" "$CDIR/rootfs.tar" / || { refused "buildah add" "$LOGS/import.log"; return 1; }
      rm -f "$CDIR/rootfs.tar"
    fi
    logged import buildah_ config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --label "org.vigil.rootfs=$stamp" --label "org.opencontainers.image.description=Debian $SUITE minbase (debootstrap), slim" "$ctr"
    logged import buildah_ commit --rm "$ctr" "$BASE_IMAGE" || { refused "buildah commit" "$LOGS/import.log"; return 1; }
    what="$what; imported as $BASE_IMAGE"
  fi
  BASE_SIZE=$(image_size "$BASE_IMAGE")
  done_step "base" "$what"
}

# ---------------------------------------------------------------------------------------------- d. image

IMAGE_BUILT=0
step_image() {
  step "d. image: buildah bud --isolation chroot (vfs) --build-arg BASE_IMAGE=$BASE_IMAGE --build-arg BINARIES=prebuilt --target runtime"
  local rev
  rev=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo "")
  say "log: $LOGS/image.log"
  : >"$LOGS/image.log"
  # Working containers an interrupted earlier build left behind (this storage is this script's alone).
  logged image buildah_ rm --all || true
  if logged image buildah_ bud --isolation chroot --layers --rm --force-rm --pull=never \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg BINARIES=prebuilt --build-arg "REVISION=$rev" \
    --target runtime -f "$REPO/Dockerfile" -t "$IMAGE" "$REPO"; then
    IMAGE_BUILT=1
  else
    refused "image build (buildah bud --isolation chroot)" "$LOGS/image.log"
    done_step "image" "FAILED - see the refusal above"
    return 1
  fi
  # vfs keeps a full copy of the tree per layer: drop the images of earlier builds that nothing uses
  # (the layers of this build stay, for the next build's cache), and the stage containers bud leaves.
  logged image buildah_ rm --all || true
  logged image podman_ image prune -f || true
  local id size steps cached
  id=$(buildah_ inspect --type image --format '{{.FromImageID}}' "$IMAGE")
  size=$(image_size "$IMAGE")
  steps=$(grep -cE '^(\[[0-9]+/[0-9]+\] )?STEP [0-9]+/[0-9]+:' "$LOGS/image.log" || true)
  cached=$(grep -c 'Using cache' "$LOGS/image.log" || true)
  # The size of the image as a registry would store it: its layers, each gzip-compressed.
  local gz=$CDIR/image-${id:0:12}.gz-size
  if [ ! -s "$gz" ]; then
    rm -f "$CDIR"/image-*.gz-size
    rm -rf "$CDIR/oci.tmp"
    # buildah push to an OCI layout compresses the layers with gzip: the blobs' total is that size.
    if logged image buildah_ push "$IMAGE" "oci:$CDIR/oci.tmp:check"; then
      find "$CDIR/oci.tmp/blobs" -type f -printf '%s\n' | awk '{s+=$1} END{print s+0}' >"$gz"
    fi
    rm -rf "$CDIR/oci.tmp"
  fi
  IMAGE_GZ=$(cat "$gz" 2>/dev/null || echo 0)
  say "image storage (vfs, with the build cache): $(du -sh "$CDIR/storage" | cut -f1)"
  done_step "image" "$IMAGE ${id:0:12}: $(human "$size") uncompressed (base $BASE_IMAGE $(human "${BASE_SIZE:-0}"), vigil's layers $(human $((size - ${BASE_SIZE:-0})))), $(human "$IMAGE_GZ") gzip-compressed; $steps steps, $cached from cache"
}

# ---------------------------------------------------------------------------------------------- e/f. run

# The inputs of the run checks: a model repository with NanoDet, the sample clip, a config, an output folder.
prepare_work() {
  local nano=$REPO/models/nanodet
  [ -s "$nano/1/model.onnx" ] || die "$nano/1/model.onnx missing (run scripts/setup.sh models)"
  [ -s "$REPO/samples/media/bikes.mp4" ] || die "samples/media/bikes.mp4 missing (run scripts/setup.sh media)"
  mkdir -p "$WORK/models" "$WORK/media" "$WORK/etc" "$WORK/out"
  rm -rf "$WORK/models/nanodet.tmp"
  cp -a "$nano" "$WORK/models/nanodet.tmp"
  rm -rf "$WORK/models/nanodet" && mv "$WORK/models/nanodet.tmp" "$WORK/models/nanodet"
  cp -f "$REPO/samples/media/bikes.mp4" "$WORK/media/bikes.mp4"
  chmod -R a+rX "$WORK/models" "$WORK/media" "$WORK/etc"
  cat >"$WORK/etc/check.yaml" <<'EOF'
# scripts/container-check.sh: NanoDet + SORT on bikes.mp4 (250 frames), an MP4 and JSON events.
name: container-check
model_repository: /models
sources:
  - name: bikes
    uri: /media/bikes.mp4
    decoder: cpu
inference:
  model: nanodet
  threshold: 0.4
tracker:
  kind: sort
overlay:
  enabled: true
outputs:
  file:
    path: /data/check.mp4
  events:
    path: /data/check-events.jsonl
EOF
  rm -rf "$WORK/out" && mkdir -p "$WORK/out"
  chown "$VIGIL_UID:$VIGIL_UID" "$WORK/out"
}

# check_run_outputs LOG: the run's exit, MP4 and events; prints one line.
check_run_outputs() {
  local events mp4
  events=$( (wc -l <"$WORK/out/check-events.jsonl") 2>/dev/null || echo 0)
  mp4=$(stat -c %s "$WORK/out/check.mp4" 2>/dev/null || echo 0)
  [ "$events" -eq 250 ] && [ "$mp4" -gt 10000 ] || {
    tail -n 20 "$1" >&2
    return 1
  }
  printf '%s events, check.mp4 %s, owner uid %s' "$events" "$(human "$mp4")" "$(stat -c %u "$WORK/out/check.mp4")"
}

RUN_ROUTE=""
# podman's options for this machine, found by podman_probe: the OCI runtime and the resource limits.
PODMAN_GLOBAL=()
PODMAN_RUN=()
# --read-only: as deploy/k8s and the Helm chart run it (readOnlyRootFilesystem; podman adds a tmpfs /tmp).
prun() { podman_ "${PODMAN_GLOBAL[@]}" run --rm --pull never --network host --read-only "${PODMAN_RUN[@]}" "$@"; }

# podman_probe: run `id` in the image, adapting to what this machine refuses (each refusal is recorded):
# limits that cannot be raised (without CAP_SYS_RESOURCE, podman's defaults RLIMIT_NOFILE/NPROC =
# 1048576/4194304 are above the hard limits) are asked at the current values, RLIMIT_NPROC then lower
# (podman 4.3, unable to raise its own, runs with 32768 here: a container cannot get more);
# crun's refusal of hybrid cgroups (v1 + a v2 hierarchy with controllers) switches to runc.
podman_probe() {
  local log=$LOGS/run.log out nproc i=0 candidates
  candidates=("$(ulimit -Hu)" 32768 16384 8192 4096)
  nproc=${candidates[0]}
  for _ in 1 2 3 4 5 6 7 8; do
    if out=$(prun --entrypoint id "$IMAGE" 2>&1); then
      say "podman run works with: ${PODMAN_GLOBAL[*]:-(defaults)} ${PODMAN_RUN[*]:-}; id in the image: $out"
      return 0
    fi
    printf '%s\n' "$out" >>"$log"
    printf '%s\n' "$out" >"$LOGS/run-try.log"
    case $out in
      *"cgroups in hybrid mode not supported"*)
        refused "podman run with crun (OCI runtime)" "$LOGS/run-try.log"
        command -v runc >/dev/null || return 1
        PODMAN_GLOBAL=(--runtime runc)
        ;;
      *RLIMIT_NOFILE* | *"rlimit type 7"*)
        refused "podman run: RLIMIT_NOFILE above the hard limit" "$LOGS/run-try.log"
        PODMAN_RUN=(--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")
        ;;
      *RLIMIT_NPROC* | *"rlimit type 6"*)
        refused "podman run: RLIMIT_NPROC=$nproc" "$LOGS/run-try.log"
        i=$((i + 1))
        [ $i -lt ${#candidates[@]} ] || return 1
        nproc=${candidates[$i]}
        PODMAN_RUN=(--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")
        ;;
      *)
        refused "podman run (runtime)" "$LOGS/run-try.log"
        return 1
        ;;
    esac
  done
  return 1
}

step_run_image() {
  step "e. run: podman run --network host $IMAGE"
  local log=$LOGS/run.log
  : >"$log"
  podman_ rm -f "$SERVE_CTR" >/dev/null 2>&1 || true
  podman_probe || return 1
  local version
  version=$(prun "$IMAGE" --version 2>>"$log") || { refused "podman run vigil --version" "$log"; return 1; }
  say "vigil --version in the image: $version"
  local inspect
  inspect=$(prun --entrypoint gst-inspect-1.0 "$IMAGE" vigilinfer 2>>"$log") ||
    { refused "podman run gst-inspect-1.0 vigilinfer" "$log"; return 1; }
  say "gst-inspect-1.0 vigilinfer in the image: $(grep -m1 -E '^ +Filename' <<<"$inspect" | xargs) ; $(grep -m1 -E '^ +Long-name' <<<"$inspect" | xargs)"

  prepare_work
  local port code uid_host uid_exec pid rc
  port=$(free_ports)
  say "vigil serve /models --http-port $port --grpc-port $((port + 1)) --metrics-port $((port + 2)) (127.0.0.1, host network, read-only root; models: $WORK/models mounted read-only)"
  podman_ "${PODMAN_GLOBAL[@]}" run -d --name "$SERVE_CTR" --pull never --network host --read-only "${PODMAN_RUN[@]}" -v "$WORK/models:/models:ro" "$IMAGE" \
    serve /models --http-port "$port" --grpc-port $((port + 1)) --metrics-port $((port + 2)) >>"$log" 2>&1 ||
    { refused "podman run -d vigil serve" "$log"; return 1; }
  local ready
  ready=$(wait_ready "http://127.0.0.1:$port/v2/health/ready" 90)
  code=${ready%% *}
  HEALTH="GET http://127.0.0.1:$port/v2/health/ready (from the host) -> $ready"
  say "$HEALTH"
  pid=$(podman_ inspect --format '{{.State.Pid}}' "$SERVE_CTR" 2>/dev/null || echo 0)
  uid_host=$(awk '/^Uid:/{print $2}' "/proc/$pid/status" 2>/dev/null || echo "?")
  uid_exec=$(podman_ "${PODMAN_GLOBAL[@]}" exec "$SERVE_CTR" id 2>>"$log" || echo "?")
  UIDS="host /proc/$pid/status Uid: $uid_host; podman exec id: $uid_exec"
  say "$UIDS"
  local ready_model
  ready_model=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/models/nanodet/ready" || true)
  say "GET /v2/models/nanodet/ready -> $ready_model"
  podman_ "${PODMAN_GLOBAL[@]}" stop -t 20 "$SERVE_CTR" >>"$log" 2>&1 || true
  rc=$(podman_ inspect --format '{{.State.ExitCode}}' "$SERVE_CTR" 2>/dev/null || echo "?")
  podman_ logs "$SERVE_CTR" >"$LOGS/serve.log" 2>&1 || true
  podman_ rm -f "$SERVE_CTR" >/dev/null 2>&1 || true
  say "SIGTERM (podman stop): exit $rc; server log: $LOGS/serve.log"
  [ "$code" = 200 ] || { tail -n 20 "$LOGS/serve.log" >&2; die "serve: /v2/health/ready gave $code"; }
  [ "$uid_host" = "$VIGIL_UID" ] || die "serve ran as uid $uid_host, not $VIGIL_UID"
  [ "$ready_model" = 200 ] || die "serve: nanodet not ready ($ready_model)"
  [ "$rc" = 0 ] || die "serve: exit status $rc after SIGTERM"

  say "vigil run /etc/vigil/check.yaml (bikes.mp4, 250 frames; /etc/vigil, /models, /media read-only, /data = $WORK/out)"
  local t2=$SECONDS out
  if ! prun -v "$WORK/models:/models:ro" -v "$WORK/etc:/etc/vigil:ro" \
    -v "$WORK/media:/media:ro" -v "$WORK/out:/data" "$IMAGE" run --progress 0 /etc/vigil/check.yaml >"$LOGS/vigil-run.log" 2>&1; then
    tail -n 20 "$LOGS/vigil-run.log" >&2
    die "vigil run failed in the image (log: $LOGS/vigil-run.log)"
  fi
  out=$(check_run_outputs "$LOGS/vigil-run.log") || die "vigil run: outputs missing (log: $LOGS/vigil-run.log)"
  RUNLINE="vigil run: exit 0 in $((SECONDS - t2)) s, $out"
  say "$RUNLINE"
  grep -E '^\[|frames|objects' "$LOGS/vigil-run.log" | head -n 6 | sed 's/^/    /'
  RUN_ROUTE="image: podman run ${PODMAN_GLOBAL[*]:-} ${PODMAN_RUN[*]:-} (OCI runtime $(podman_ "${PODMAN_GLOBAL[@]}" info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null || echo '?'))"
  done_step "run" "$version; health ready 200; uid $uid_host; serve exit $rc on SIGTERM; $RUNLINE"
}

# in_root ROOT USERSPEC ENV... -- CMD...: run CMD chrooted into ROOT in a mount (and pid) namespace of its own
# with /proc, /dev and the bind mounts in BINDS (SRC:DEST[:ro]) set up; the host network is shared.
BINDS=()
in_root() {
  local root=$1 user=$2
  shift 2
  local envs=()
  while [ "$1" != -- ]; do
    envs+=("$1")
    shift
  done
  shift
  local script='set -e; R=$1; shift; mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; '
  local b src dst ro
  for b in "${BINDS[@]}"; do
    IFS=: read -r src dst ro <<<"$b"
    script+="mkdir -p \"\$R$dst\"; mount --bind '$src' \"\$R$dst\"; "
    [ "$ro" != ro ] || script+="mount -o remount,bind,ro \"\$R$dst\"; "
  done
  if [ "$user" = root ]; then
    script+='exec chroot "$R" "$@"'
  else
    script+="exec chroot --userspec=$user --groups=${user#*:} \"\$R\" \"\$@\""
  fi
  unshare --mount --pid --fork --kill-child=SIGTERM --propagation private \
    bash -c "$script" in_root "$root" /usr/bin/env -i "${envs[@]}" "$@"
}

# Replay the Dockerfile's runtime stage into FBROOT (a copy of the debootstrap root): its ARG, ENV, USER
# and WORKDIR, its RUN instructions with chroot (as USER), its COPY --from=binaries from the prebuilt
# stage's files (that stage's COPY instructions applied to target/container/). What comes before the
# first COPY (the package installation) is kept between runs while it and the rootfs are unchanged.
replay_runtime_stage() {
  local plan stamp reuse=0
  plan=$(dockerfile_stage runtime "BASE_IMAGE=$BASE_IMAGE" BINARIES=prebuilt)
  stamp=$({ cat "$ROOTFS/.vigil-rootfs"; sed '/^COPY/,$d' <<<"$plan"; } | sha256sum | cut -d' ' -f1)
  if [ -f "$FBROOT/.vigil-fallback" ] && [ "$(cat "$FBROOT/.vigil-fallback")" = "$stamp" ]; then
    reuse=1
    say "fallback root $FBROOT has this Dockerfile's installation on this rootfs - RUN steps before the first COPY skipped"
  else
    say "copying $ROOTFS to $FBROOT and replaying the Dockerfile's runtime stage with chroot (log: $LOGS/fallback.log)"
    rm -rf "$FBROOT"
    cp -a "$ROOTFS" "$FBROOT"
  fi
  : >"$LOGS/fallback.log"
  # The prebuilt stage's files, as the image build would have them.
  local stage=$CDIR/fallback-binaries kind a b c
  rm -rf "$stage" && mkdir -p "$stage"
  while IFS=$'\t' read -r kind a b c; do
    [ "$kind" = COPY ] || continue
    [ "$a" = - ] || die "fallback: the prebuilt stage copies from stage $a; only the build context is handled"
    copy_into "$REPO/$b" "$stage$c"
  done < <(dockerfile_stage prebuilt "BASE_IMAGE=$BASE_IMAGE" BINARIES=prebuilt)
  cp -L /etc/resolv.conf "$FBROOT/etc/resolv.conf"
  local user=root vars=() n=0 home pre_runs
  pre_runs=$(sed -n '/^COPY/q;p' <<<"$plan" | grep -c '^RUN' || true)
  while IFS=$'\t' read -r kind a b c; do
    case $kind in
      ARG | ENV) vars+=("$a=$b") ;;
      USER) user=$a ;;
      WORKDIR) mkdir -p "$FBROOT$a" ;;
      COPY)
        reuse=0
        [ "$a" = binaries ] || die "fallback: COPY --from=$a in the runtime stage; only --from=binaries is handled"
        copy_into "$stage$b" "$FBROOT$c"
        say "  COPY --from=binaries $b -> $c"
        ;;
      RUN)
        n=$((n + 1))
        if [ "$reuse" = 1 ]; then
          say "  RUN #$n: kept from an earlier run"
          continue
        fi
        home=/root
        [ "$user" = root ] || home=$(awk -F: -v u="${user%%:*}" '$3 == u || $1 == u {print $6; exit}' "$FBROOT/etc/passwd")
        say "  RUN #$n as $user: $(cut -c1-100 <<<"$a")..."
        BINDS=()
        logged fallback in_root "$FBROOT" "$user" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
          HOME="${home:-/}" DEBIAN_FRONTEND=noninteractive "${vars[@]}" -- /bin/sh -c "$a" ||
          { refused "fallback RUN #$n in chroot" "$LOGS/fallback.log"; rm -f "$FBROOT/etc/resolv.conf"; die "fallback install failed"; }
        # The installation is complete once the RUN steps before the first COPY have run.
        [ "$n" != "$pre_runs" ] || printf '%s' "$stamp" >"$FBROOT/.vigil-fallback"
        ;;
    esac
  done <<<"$plan"
  rm -f "$FBROOT/etc/resolv.conf"
}

# copy_into SRC DEST: as COPY does: a folder's contents into DEST, a file to DEST (with its mode).
copy_into() {
  if [ -d "$1" ]; then
    mkdir -p "$2"
    cp -a "$1/." "$2/"
  elif [ -e "$1" ]; then
    case $2 in
      */) install -D -m "$(stat -c %a "$1")" "$1" "$2$(basename "$1")" ;;
      *) install -D -m "$(stat -c %a "$1")" "$1" "$2" ;;
    esac
  else
    die "fallback: $1 missing"
  fi
}

# run_checks_in_root ROOT WHAT: the checks of step e, chrooted into ROOT as uid 10001.
run_checks_in_root() {
  local root=$1 what=$2 log=$LOGS/run-chroot.log plan envs=() kind a b c
  plan=$(dockerfile_stage runtime "BASE_IMAGE=$BASE_IMAGE" BINARIES=prebuilt)
  while IFS=$'\t' read -r kind a b c; do
    [ "$kind" != ENV ] || envs+=("$a=$b")
  done <<<"$plan"
  local home
  home=$(awk -F: -v u="$VIGIL_UID" '$3 == u {print $6; exit}' "$root/etc/passwd")
  envs+=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="${home:-/}")
  local u="$VIGIL_UID:$VIGIL_UID"
  : >"$log"
  BINDS=()
  local version
  version=$(in_root "$root" "$u" "${envs[@]}" -- vigil --version 2>>"$log") || { refused "chroot vigil --version" "$log"; die "fallback run failed"; }
  say "vigil --version in $what: $version"
  local inspect
  inspect=$(in_root "$root" "$u" "${envs[@]}" -- gst-inspect-1.0 vigilinfer 2>>"$log") || { refused "chroot gst-inspect-1.0 vigilinfer" "$log"; die "fallback run failed"; }
  say "gst-inspect-1.0 vigilinfer: $(grep -m1 -E '^ +Filename' <<<"$inspect" | xargs) ; $(grep -m1 -E '^ +Long-name' <<<"$inspect" | xargs)"

  prepare_work
  local port code upid vpid uid rc ready_model
  port=$(free_ports)
  say "vigil serve /models --http-port $port --grpc-port $((port + 1)) --metrics-port $((port + 2)) (unshare + chroot --userspec=$u, host network)"
  BINDS=("$WORK/models:/models:ro")
  in_root "$root" "$u" "${envs[@]}" -- /bin/sh -c "cd /data && exec vigil serve /models --http-port $port --grpc-port $((port + 1)) --metrics-port $((port + 2))" \
    >"$LOGS/serve.log" 2>&1 &
  upid=$!
  local ready
  ready=$(wait_ready "http://127.0.0.1:$port/v2/health/ready" 90)
  code=${ready%% *}
  HEALTH="GET http://127.0.0.1:$port/v2/health/ready (from the host) -> $ready"
  say "$HEALTH"
  # (subshell) -> unshare -> pid 1 of the new namespace: bash -> exec chroot -> env -> sh -> vigil
  vpid=$(descendant "$upid" vigil || true)
  uid=$(awk '/^Uid:/{print $2}' "/proc/$vpid/status" 2>/dev/null || echo "?")
  UIDS="host /proc/$vpid/status ($(cat "/proc/$vpid/comm" 2>/dev/null)) Uid: $uid"
  say "$UIDS"
  ready_model=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/models/nanodet/ready" || true)
  say "GET /v2/models/nanodet/ready -> $ready_model"
  # unshare ignores SIGTERM while it waits: the signal goes to vigil itself.
  [ -z "$vpid" ] || kill -TERM "$vpid" 2>/dev/null || true
  rc=0
  wait "$upid" || rc=$?
  say "SIGTERM: exit $rc; server log: $LOGS/serve.log"
  [ "$code" = 200 ] || { tail -n 20 "$LOGS/serve.log" >&2; die "serve: /v2/health/ready gave $code"; }
  [ "$uid" = "$VIGIL_UID" ] || die "serve ran as uid $uid, not $VIGIL_UID"
  [ "$ready_model" = 200 ] || die "serve: nanodet not ready ($ready_model)"
  [ "$rc" = 0 ] || die "serve: exit status $rc after SIGTERM"

  say "vigil run /etc/vigil/check.yaml (bikes.mp4, 250 frames)"
  local t2=$SECONDS out
  BINDS=("$WORK/models:/models:ro" "$WORK/etc:/etc/vigil:ro" "$WORK/media:/media:ro" "$WORK/out:/data")
  if ! in_root "$root" "$u" "${envs[@]}" -- /bin/sh -c "cd /data && exec vigil run --progress 0 /etc/vigil/check.yaml" \
    >"$LOGS/vigil-run.log" 2>&1; then
    tail -n 20 "$LOGS/vigil-run.log" >&2
    die "vigil run failed in $what (log: $LOGS/vigil-run.log)"
  fi
  out=$(check_run_outputs "$LOGS/vigil-run.log") || die "vigil run: outputs missing (log: $LOGS/vigil-run.log)"
  RUNLINE="vigil run: exit 0 in $((SECONDS - t2)) s, $out"
  say "$RUNLINE"
  grep -E '^\[|frames|objects' "$LOGS/vigil-run.log" | head -n 6 | sed 's/^/    /'
  done_step "fallback" "$what: $version; health ready 200; uid $uid; serve exit $rc on SIGTERM; $RUNLINE"
}

step_fallback() {
  step "f. fallback: unshare + chroot as uid $VIGIL_UID"
  if [ "$IMAGE_BUILT" = 1 ] && [ "$ROUTE" != chroot ]; then
    # Only the runtime was refused: the image's own files, mounted by buildah.
    local ctr mnt
    buildah_ rm vigil-check-root >/dev/null 2>&1 || true
    ctr=$(buildah_ from --pull-never --name vigil-check-root "$IMAGE" 2>>"$LOGS/run-chroot.log") &&
      mnt=$(buildah_ mount "$ctr" 2>>"$LOGS/run-chroot.log") || { refused "buildah mount of the image" "$LOGS/run-chroot.log"; mnt=""; }
    if [ -n "$mnt" ]; then
      RUN_ROUTE="fallback: the image's root folder (buildah mount) with unshare + chroot"
      run_checks_in_root "$mnt" "the image's files (buildah mount)"
      buildah_ unmount "$ctr" >/dev/null 2>&1 || true
      buildah_ rm "$ctr" >/dev/null 2>&1 || true
      return
    fi
  fi
  replay_runtime_stage
  RUN_ROUTE="fallback: debootstrap root + the Dockerfile's runtime stage replayed with chroot, run with unshare + chroot"
  run_checks_in_root "$FBROOT" "the fallback root $FBROOT ($(du -sh --apparent-size "$FBROOT" | cut -f1))"
}

# ---------------------------------------------------------------------------------------------- main

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, debootstrap, chroot, mounts)"
case $ROUTE in auto | image | mount | chroot) ;; *) die "VIGIL_CONTAINER_ROUTE must be auto, image, mount or chroot" ;; esac
mkdir -p "$CDIR" "$LOGS"
exec 9>"$CDIR/.lock"
flock -n 9 || die "another container-check.sh runs (lock $CDIR/.lock)"
cleanup() {
  podman "${STORAGE[@]}" rm -f "$SERVE_CTR" >/dev/null 2>&1 || true
  buildah "${STORAGE[@]}" rm vigil-check-root >/dev/null 2>&1 || true
}
trap cleanup EXIT

step_build
step_tools
base_ok=1
step_base || base_ok=0
if [ "$ROUTE" = chroot ]; then
  say "VIGIL_CONTAINER_ROUTE=chroot: image build and podman run skipped"
  step_fallback
else
  image_ok=0
  if [ "$base_ok" = 1 ]; then
    step_image && image_ok=1
  fi
  if [ "$image_ok" = 1 ] && [ "$ROUTE" = mount ]; then
    say "VIGIL_CONTAINER_ROUTE=mount: podman run skipped, the image's files are run with unshare + chroot"
    step_fallback
  elif [ "$image_ok" = 1 ] && step_run_image; then
    :
  elif [ "$ROUTE" = image ]; then
    die "the image route was refused and VIGIL_CONTAINER_ROUTE=image forbids the fallback"
  else
    step_fallback
  fi
fi

printf '\n== summary (%ss in all)\n' $((SECONDS - T0))
for l in "${SUMMARY[@]}"; do printf '  %s\n' "$l"; done
printf '  route: %s\n' "$RUN_ROUTE"
printf '  health: %s\n' "${HEALTH:-}"
printf '  uid: %s\n' "${UIDS:-}"
if [ ${#REFUSED[@]} -eq 0 ]; then
  printf '  refused: nothing\n'
else
  for l in "${REFUSED[@]}"; do printf '  refused: %s\n' "$l"; done
fi
