# shellcheck shell=bash
# What tools/helm/build.sh, tools/karpenter/build.sh and tools/testcluster/build.sh share (they source it):
# each builds a pinned Go tool from the Go module proxy into a cache outside the repository
# (SDWORKER_CACHE, default ~/.cache/sdworker), in a directory named by the tool's version and a hash of
# its inputs, this library included (changing any of them rebuilds). A second run with the same inputs is
# a no-op. Progress goes to stderr; the path a script prints is the last line of stdout.
#
#   gobuild_setup NAME LABEL INPUT...     GOBUILD_OUT=<cache>/NAME/LABEL-<hash of INPUT... and this file>
#   gobuild_exit_if_cached RESULT FILE... print RESULT and exit 0 if GOBUILD_OUT is complete with FILE...
#   gobuild_start TOOLCHAIN RESULT FILE...  take the build lock (one build per output at a time), check the
#                                         cache again, export the Go environment, make GOBUILD_TMP
#   gobuild_modules PACKAGE               download the modules; print how many packages PACKAGE builds
#   gobuild_go WHAT TOTAL GOARGS...       run `go GOARGS...`, turning its -v output into a line every ~5%
#   gobuild_install RESULT                mark GOBUILD_TMP complete, move it to GOBUILD_OUT, print RESULT

gobuild_lib="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/gobuild.sh"

gobuild_log() { printf '[%s] %s\n' "$GOBUILD_NAME" "$*" >&2; }

gobuild_setup() {
  GOBUILD_NAME=$1
  local label=$2 key
  shift 2
  key=$(cat "$@" "$gobuild_lib" | sha256sum | cut -c1-16)
  GOBUILD_OUT="${SDWORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sdworker}/$GOBUILD_NAME/$label-$key"
}

gobuild_complete() {
  [[ -f "$GOBUILD_OUT/.complete" ]] || return 1
  local f
  for f in "$@"; do [[ -x "$GOBUILD_OUT/$f" ]] || return 1; done
}

gobuild_exit_if_cached() {
  local result=$1
  shift
  if gobuild_complete "$@"; then
    gobuild_log "cached: $result"
    echo "$result"
    exit 0
  fi
}

gobuild_start() {
  local toolchain=$1
  shift
  command -v go >/dev/null || { gobuild_log "Go is required (not found on PATH)"; exit 1; }
  mkdir -p "$(dirname "$GOBUILD_OUT")"
  # A cold build takes minutes to tens of minutes on 2 cores: a second caller waits for it, not repeats it.
  exec {gobuild_lock}>"$GOBUILD_OUT.lock"
  if ! flock -n "$gobuild_lock"; then
    gobuild_log "another build of $GOBUILD_OUT is running; waiting for it"
    flock "$gobuild_lock"
  fi
  gobuild_exit_if_cached "$@"
  export GOTOOLCHAIN=$toolchain CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
  GOBUILD_TMP="$GOBUILD_OUT.tmp.$$"
  rm -rf "$GOBUILD_TMP"
  mkdir -p "$GOBUILD_TMP"
  trap 'rm -rf "$GOBUILD_TMP"' EXIT
  GOBUILD_STARTED=$(date +%s)
}

gobuild_modules() {
  gobuild_log "downloading modules..."
  go mod download
  go list -deps "$1" | wc -l
}

# `go build -v` names each package as it is compiled; a progress line every ~5% shows a cold build is alive.
gobuild_go() {
  local prefix="[$GOBUILD_NAME] ${1:+$1: }" total=$2
  shift 2
  go "$@" 2>&1 | awk -v prefix="$prefix" -v total="$total" '
    /^#|: / { print > "/dev/stderr"; fflush("/dev/stderr"); next }
    { n++; step = int(total / 20); if (step < 1) step = 1
      if (n % step == 0) { printf "%s%d/~%d packages compiled\n", prefix, n, total > "/dev/stderr"; fflush("/dev/stderr") } }'
  return "${PIPESTATUS[0]}"
}

gobuild_install() {
  touch "$GOBUILD_TMP/.complete"
  rm -rf "$GOBUILD_OUT"
  mv "$GOBUILD_TMP" "$GOBUILD_OUT"
  trap - EXIT
  gobuild_log "done in $(($(date +%s) - GOBUILD_STARTED))s: $(du -sh "$1" | cut -f1) $1"
  echo "$1"
}
