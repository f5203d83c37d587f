#!/usr/bin/env bash
# Runs one fuzz target (fuzz/README.md): `fuzz/run.sh TARGET [RUNS] [-- LIBFUZZER_ARGS...]`.
# RUNS: number of inputs (default 1000000). The corpus grows in fuzz/corpus/TARGET (seeded from
# fuzz/seeds/TARGET, built by fuzz/seed.sh when missing); crashes, timeouts and out-of-memory
# inputs land in fuzz/artifacts/TARGET/. One fuzzing process: libFuzzer's -jobs/-workers are not
# used. Limits: 10 s per input, 2048 MB resident memory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
target=${1:?usage: fuzz/run.sh TARGET [RUNS] [-- LIBFUZZER_ARGS...]}
shift
runs=1000000
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  runs=$1
  shift
fi
[ "${1:-}" = "--" ] && shift

case "$target" in
  model_config) dict=dicts/pbtxt.dict ;;
  pipeline_config) dict=dicts/yaml.dict ;;
  inspection_rules) dict=dicts/rules.dict ;;
  *) dict= ;;
esac

[ -d "seeds/$target" ] || bash seed.sh >/dev/null
mkdir -p "corpus/$target" "artifacts/$target"
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run --sanitizer none --debug-assertions "$target" \
  "$PWD/corpus/$target" "$PWD/seeds/$target" -- \
  -runs="$runs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$PWD/artifacts/$target/" ${dict:+-dict="$PWD/$dict"} "$@"
