#!/usr/bin/env bash
# Builds a small x86_64 test kernel once and caches it; prints its bzImage path.
#
#   tests/kernel/build-kernel.sh 6.1        Linux 6.1 (bookworm linux-source-6.1):
#                                          system and CMA ("reserved") DMA heaps,
#                                          plus the kernel's dmabuf-heap kselftest
#   tests/kernel/build-kernel.sh mainline   Linux 7.x (Debian sid linux-source) with
#                                          the TEE protected heaps and tee-testdrv
#   ... --refresh                          mainline: ask sid again for its newest
#                                          linux-source instead of reusing the cached .deb
#
# stdout: the bzImage path, nothing else. Logs go to stderr, the kernel build's
# own output to a build.log in the work directory (its tail is shown on failure).
#
# Cache: ${RSTMEM_TESTKERNEL_CACHE:-~/.cache/rstmemd/testkernel}/<name>-<hash>/
# holding bzImage, config (the final .config), headers/ (the tree's uapi
# headers, for test programs built against this exact kernel: smoke.sh builds
# protected-heap-check.c with them) and, for 6.1, dmabuf-heap. The
# hash covers the source package's name and version, the config fragments, the
# driver source (mainline) and RECIPE_VERSION below. A warm run takes seconds
# and needs no network; a cold one takes minutes (its unpacked tree stays in
# <cache>/work/ until the next build of that kernel). flock keeps two concurrent
# invocations from building the same kernel twice or corrupting the cache.
#
# Needs root for apt-get (as build.sh does); fails loudly, never skips.
set -euo pipefail

# Bump when the steps below change what gets built (not for comments or logging).
RECIPE_VERSION=2

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
CACHE=${RSTMEM_TESTKERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rstmemd/testkernel}
DEBIAN_MIRROR=${RSTMEM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# shellcheck source=tests/lib/common.sh
. "$HERE/../lib/common.sh"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# Sourced (tests/board/build-board.sh, for the sid source and the helpers below):
# define the functions only; the caller sets NAME, FRAGMENTS, LOG_PREFIX and REFRESH.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  NAME=${1:-}
  REFRESH=0
  [ $# -gt 0 ] && shift
  for arg in "$@"; do
    case "$arg" in
      --refresh) REFRESH=1 ;;
      *) usage ;;
    esac
  done

  case "$NAME" in
    6.1) FRAGMENTS=("$HERE/config/common.config" "$HERE/config/6.1.config") ;;
    mainline) FRAGMENTS=("$HERE/config/common.config" "$HERE/config/mainline.config") ;;
    *) usage ;;
  esac
  LOG_PREFIX="build-kernel[$NAME]"
fi
DRIVER_DIR=$HERE/tee-testdrv

# Host tools a kernel build needs (gcc and make: build.sh's list already).
BUILD_PACKAGES=(gcc make libc6-dev bc bison flex libelf-dev libssl-dev cpio xz-utils rsync)

# --- The kernel source: a tarball and the version of the package it came from.

# Sets SOURCE_TARBALL, SOURCE_PACKAGE, SOURCE_VERSION.
source_6_1() {
  ensure_debian_packages linux-source-6.1
  SOURCE_PACKAGE=linux-source-6.1
  SOURCE_VERSION=$(dpkg-query -W -f='${Version}' linux-source-6.1)
  SOURCE_TARBALL=/usr/src/linux-source-6.1.tar.xz
  [ -f "$SOURCE_TARBALL" ] || die "$SOURCE_TARBALL is missing although linux-source-6.1 is installed"
}

# Debian sid's linux-source is a metapackage depending on linux-source-X.Y,
# which ships /usr/src/linux-source-X.Y.tar.xz. The .deb is fetched with
# `apt-get download` through a sid sources entry that lives in a private
# temporary apt directory (its own source list, lists and cache), so the host's
# /etc/apt, /var/lib/apt/lists and /var/cache/apt are never touched, and
# nothing from sid is installed. The fetched .deb is kept in the cache and
# reused (the build stays reproducible and offline) until --refresh.
MAINLINE_DOWNLOADS=$CACHE/downloads
MAINLINE_PIN=$MAINLINE_DOWNLOADS/mainline-source.deb

fetch_mainline_deb() {
  local apt_dir
  # Runs in a subshell (source_mainline): the private directory goes away
  # when it ends, however it ends, and the host's apt configuration was never involved.
  make_temp_dir apt_dir sid-apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/download"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s sid main\n' "$DEBIAN_MIRROR" > "$apt_dir/sid.list"
  local apt_options=(
    -o "Dir::Etc::SourceList=$apt_dir/sid.list" -o "Dir::Etc::SourceParts=$apt_dir/none"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Sandbox::User=root" -qq
  )
  log "asking Debian sid for linux-source (private apt directory $apt_dir)"
  apt-get "${apt_options[@]}" update >&2 || die "apt-get update of the sid sources entry failed"
  local depends package
  depends=$(apt-cache "${apt_options[@]}" show linux-source | sed -n 's/^Depends: //p' | head -1)
  package=$(printf '%s\n' "$depends" | grep -o 'linux-source-[0-9][0-9.]*' | head -1)
  [ -n "$package" ] || die "cannot tell which linux-source-X.Y sid's linux-source depends on (Depends: '$depends')"
  log "downloading $package from sid"
  (cd "$apt_dir/download" && apt-get "${apt_options[@]}" download "$package" >&2) || die "apt-get download $package failed"
  local deb
  deb=$(ls "$apt_dir/download"/"$package"_*.deb)
  mkdir -p "$MAINLINE_DOWNLOADS"
  mv "$deb" "$MAINLINE_DOWNLOADS/"
  ln -sfn "$(basename "$deb")" "$MAINLINE_PIN.new" && mv -T "$MAINLINE_PIN.new" "$MAINLINE_PIN"
}

source_mainline() {
  ensure_debian_packages apt dpkg debian-archive-keyring
  mkdir -p "$MAINLINE_DOWNLOADS"
  (
    # One fetch at a time; whoever waited sees the other's result.
    exec 8>"$MAINLINE_DOWNLOADS/.lock"
    flock 8
    if [ "$REFRESH" -eq 1 ] || [ ! -f "$MAINLINE_PIN" ]; then
      fetch_mainline_deb
    fi
  )
  [ -f "$MAINLINE_PIN" ] || die "no mainline linux-source .deb in $MAINLINE_DOWNLOADS"
  SOURCE_DEB=$(readlink -f "$MAINLINE_PIN")
  SOURCE_PACKAGE=$(dpkg-deb -f "$SOURCE_DEB" Package)
  SOURCE_VERSION=$(dpkg-deb -f "$SOURCE_DEB" Version)
  SOURCE_TARBALL=
}

# --- The cache key.

cache_key() {
  {
    printf 'recipe %s\nname %s\npackage %s %s\n' "$RECIPE_VERSION" "$NAME" "$SOURCE_PACKAGE" "$SOURCE_VERSION"
    local file
    for file in "${FRAGMENTS[@]}"; do printf 'fragment %s\n' "$(basename "$file")"; cat "$file"; done
    if [ "$NAME" = mainline ]; then
      for file in "$DRIVER_DIR"/*; do printf 'driver %s\n' "$(basename "$file")"; cat "$file"; done
    fi
  } | sha256sum | cut -c1-16
}

# --- The build.

# Every CONFIG_X=y|value line of the fragments must be in .config as written;
# every CONFIG_X=n must be unset. Kconfig drops what it cannot satisfy
# silently, so this is where a missing dependency shows up.
verify_config() {
  local config=$1 dropped=() line option value
  while IFS= read -r line; do
    case "$line" in CONFIG_*=*) ;; *) continue ;; esac
    option=${line%%=*}
    value=${line#*=}
    if [ "$value" = n ]; then
      grep -Eq "^$option=" "$config" && dropped+=("$option=n (is $(grep -E "^$option=" "$config" | cut -d= -f2))")
    else
      grep -qx "$option=$value" "$config" || dropped+=("$option=$value (is $(grep -E "^$option=|^# $option is not set" "$config" || echo absent))")
    fi
  done < <(cat "${FRAGMENTS[@]}")
  if [ ${#dropped[@]} -gt 0 ]; then
    printf 'build-kernel[%s]:   dropped by Kconfig: %s\n' "$NAME" "${dropped[@]}" >&2
    die "the $NAME config lost ${#dropped[@]} required option(s); see above"
  fi
}

# The TEE test backend goes into drivers/tee/rstmem-testdrv/ with its own
# Kconfig symbol (CONFIG_TEE_RSTMEM_TESTDRV), so .config shows it like any driver.
add_tee_testdrv() {
  local tree=$1
  [ -f "$tree/include/linux/tee_core.h" ] && grep -q tee_protmem_static_pool_alloc "$tree/include/linux/tee_core.h" \
    || die "$SOURCE_PACKAGE $SOURCE_VERSION has no tee_protmem_static_pool_alloc(): not a kernel with TEE protected heaps"
  mkdir -p "$tree/drivers/tee/rstmem-testdrv"
  cp "$DRIVER_DIR"/* "$tree/drivers/tee/rstmem-testdrv/"
  printf '\nsource "drivers/tee/rstmem-testdrv/Kconfig"\n' >> "$tree/drivers/tee/Kconfig"
  printf 'obj-$(CONFIG_TEE_RSTMEM_TESTDRV) += rstmem-testdrv/\n' >> "$tree/drivers/tee/Makefile"
}

run_logged() {
  local build_log=$1
  shift
  if ! "$@" >>"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die "'$*' failed; full log: $build_log"
  fi
}

build() {
  local key=$1 out=$2 work tree build_log start
  work=$CACHE/work/$NAME-$key
  # Trees of earlier (failed or superseded) builds of this kernel go too.
  rm -rf "$CACHE/work/$NAME"-*
  mkdir -p "$work"
  build_log=$work/build.log
  start=$SECONDS

  log "unpacking $SOURCE_PACKAGE $SOURCE_VERSION into $work"
  if [ -n "$SOURCE_TARBALL" ]; then
    tar -xf "$SOURCE_TARBALL" -C "$work"
  else
    dpkg-deb --fsys-tarfile "$SOURCE_DEB" | tar -x -C "$work" --wildcards './usr/src/linux-source-*.tar.xz'
    tar -xf "$work"/usr/src/linux-source-*.tar.xz -C "$work"
    rm -rf "${work:?}/usr"
  fi
  tree=$(ls -d "$work"/linux-source-*/)
  tree=${tree%/}
  log "unpacked in $((SECONDS - start)) s"

  [ "$NAME" = mainline ] && add_tee_testdrv "$tree"

  log "configuring: tinyconfig + ${FRAGMENTS[*]##*/}"
  run_logged "$build_log" make -C "$tree" tinyconfig
  run_logged "$build_log" "$tree/scripts/kconfig/merge_config.sh" -m -O "$tree" "$tree/.config" "${FRAGMENTS[@]}"
  run_logged "$build_log" make -C "$tree" olddefconfig
  verify_config "$tree/.config"

  log "configured in $((SECONDS - start)) s; make -j$(nproc) bzImage (log: $build_log)"
  run_logged "$build_log" make -C "$tree" -j"$(nproc)" bzImage
  log "bzImage in $((SECONDS - start)) s"

  local staging=$out.tmp.$$
  on_exit "rm -rf $(shell_quote "$staging")"
  rm -rf "$staging"
  mkdir -p "$staging"
  cp "$tree/arch/x86/boot/bzImage" "$staging/bzImage"
  cp "$tree/.config" "$staging/config"
  run_logged "$build_log" make -C "$tree" headers_install INSTALL_HDR_PATH="$staging/headers"

  if [ "$NAME" = 6.1 ]; then
    # The kernel's own DMA-heap selftest, from the same tree, against its uapi headers.
    log "building the dmabuf-heap kselftest"
    run_logged "$build_log" gcc -O2 -Wall -static -I"$staging/headers/include" \
      -o "$staging/dmabuf-heap" "$tree/tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c"
  fi

  printf 'name=%s\npackage=%s\nversion=%s\nrecipe=%s\nbuilt=%s\nbuild_seconds=%s\n' \
    "$NAME" "$SOURCE_PACKAGE" "$SOURCE_VERSION" "$RECIPE_VERSION" "$(date -u +%FT%TZ)" "$((SECONDS - start))" > "$staging/info"
  rm -rf "$out"
  mv -T "$staging" "$out"
  # The work tree stays (for a look at it, and deleting 1.5 GB takes a while
  # here) until the next build of this kernel.
  log "built $NAME in $((SECONDS - start)) s (work tree kept in $work)"
}

main() {
  mkdir -p "$CACHE"
  ensure_debian_packages "${BUILD_PACKAGES[@]}"
  case "$NAME" in
    6.1) source_6_1 ;;
    mainline) source_mainline ;;
  esac

  local key out
  key=$(cache_key)
  out=$CACHE/$NAME-$key
  if [ ! -f "$out/bzImage" ]; then
    exec 9>"$CACHE/.lock-$NAME"
    if ! flock -n 9; then
      log "another build of $NAME is running; waiting for it"
      flock 9
    fi
    # The build we waited for may have produced exactly this kernel.
    [ -f "$out/bzImage" ] || build "$key" "$out"
  fi
  log "$NAME: $SOURCE_PACKAGE $SOURCE_VERSION, cached at $out"
  printf '%s\n' "$out/bzImage"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main
  exit
fi
