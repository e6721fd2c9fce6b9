# Shared by build.sh and the scripts in tests/kernel: logging, cleanup of
# temporary files on any exit, and Debian packages. Source it, then set
# LOG_PREFIX (the name each line starts with).
#
#   log MESSAGE...            "PREFIX: MESSAGE" on stderr
#   die MESSAGE...            "PREFIX: FAILED: MESSAGE" on stderr, exit $DIE_STATUS (default 1)
#   on_exit COMMAND           run COMMAND (eval'd) when this shell exits, also on
#                             SIGINT, SIGTERM and SIGHUP; last registered runs first;
#                             $EXIT_STATUS is the status the shell is exiting with
#   make_temp_dir VAR WHAT    VAR=a new directory ${TMPDIR:-/tmp}/rstmem-WHAT.XXXXXX, removed on exit
#   make_temp_file VAR WHAT   the same for a file
#   ensure_debian_packages PACKAGE...
#                             as root: apt-get install whichever are missing; else
#                             fail naming them and the command that installs them
# shellcheck shell=bash

LOG_PREFIX=${LOG_PREFIX:-$(basename "$0")}
DIE_STATUS=${DIE_STATUS:-1}

log() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() { printf '%s: FAILED: %s\n' "$LOG_PREFIX" "$*" >&2; exit "$DIE_STATUS"; }

# --- Exit actions. A subshell starts with none of its parent's: each shell
# cleans up only what it registered itself.
_COMMON_EXIT_ACTIONS=()
_COMMON_EXIT_OWNER=

_common_run_exit_actions() {
  EXIT_STATUS=$?
  local i
  # A second signal (a repeated kill, Ctrl-C twice) must not cut the clean-up
  # short: the TERM trap's `exit` would end this function between two actions.
  trap '' HUP INT TERM
  for ((i = ${#_COMMON_EXIT_ACTIONS[@]} - 1; i >= 0; i--)); do
    eval "${_COMMON_EXIT_ACTIONS[i]}" || true
  done
  _COMMON_EXIT_ACTIONS=()
}

on_exit() {
  if [ "$_COMMON_EXIT_OWNER" != "$BASHPID" ]; then
    _COMMON_EXIT_ACTIONS=()
    _COMMON_EXIT_OWNER=$BASHPID
    trap _common_run_exit_actions EXIT
    # bash runs no EXIT trap when a signal kills it: turn them into exits.
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
  _COMMON_EXIT_ACTIONS+=("$1")
}

# shell_quote WORD: WORD as one single-quoted shell word.
shell_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

make_temp_dir() {
  local path
  path=$(mktemp -d "${TMPDIR:-/tmp}/rstmem-$2.XXXXXX") || die "mktemp -d failed"
  on_exit "rm -rf $(shell_quote "$path")"
  printf -v "$1" '%s' "$path"
}

make_temp_file() {
  local path
  path=$(mktemp "${TMPDIR:-/tmp}/rstmem-$2.XXXXXX") || die "mktemp failed"
  on_exit "rm -f $(shell_quote "$path")"
  printf -v "$1" '%s' "$path"
}

# --- Debian packages.

# One lock and one record of the last apt-get update for every caller on the
# machine, whatever TMPDIR each has: the two kernel builds real-kernels.sh
# starts at once must not run apt-get side by side.
RSTMEM_APT_LOCK=${RSTMEM_APT_LOCK:-/tmp/rstmemd-apt.lock}
RSTMEM_APT_UPDATED=${RSTMEM_APT_UPDATED:-/tmp/rstmemd-apt.updated}

missing_debian_packages() {
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$package"
  done
}

_apt_get() {
  # dpkg's own lock may be held by someone else's apt: wait for it (a bound, not a measure).
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

# apt-get update once per boot (the record holds the boot id); again only
# when an install from the lists it left fails (a package moved since).
_apt_update() {
  log "apt-get update"
  _apt_get update -qq >&2 || die "apt-get update failed"
  cat /proc/sys/kernel/random/boot_id > "$RSTMEM_APT_UPDATED"
}

ensure_debian_packages() {
  local missing=() lock_fd
  mapfile -t missing < <(missing_debian_packages "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
  exec {lock_fd}>>"$RSTMEM_APT_LOCK"
  flock "$lock_fd"
  # Whoever held the lock may have installed them meanwhile.
  mapfile -t missing < <(missing_debian_packages "$@")
  if [ ${#missing[@]} -gt 0 ]; then
    local updated=0
    if [ "$(cat "$RSTMEM_APT_UPDATED" 2>/dev/null)" != "$(cat /proc/sys/kernel/random/boot_id)" ]; then
      _apt_update
      updated=1
    fi
    log "installing Debian packages: ${missing[*]}"
    if ! _apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
      [ "$updated" -eq 0 ] || die "apt-get install ${missing[*]} failed"
      _apt_update
      _apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
    fi
    mapfile -t missing < <(missing_debian_packages "$@")
    [ ${#missing[@]} -eq 0 ] || die "apt-get install succeeded but these are still not installed: ${missing[*]}"
  fi
  flock -u "$lock_fd"
  exec {lock_fd}>&-
}
