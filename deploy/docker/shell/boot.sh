#!/usr/bin/env bash
# Boot of the ruflo-shell container: reconcile the declared tool inventory (time-bounded, a
# failure tolerated), prepare sshd (host keys, the container environment for every session, the
# login summary), then exec the sshd command given after `--`, so the container lives as sshd does.
#
# usage: boot.sh [--reconcile-timeout SECONDS] [--run-dir DIR] [--host-key-dir DIR]
#                [--sshd-base-config FILE] -- SSHD_COMMAND [ARG...]
#
# The reconcile runs before sshd and never keeps it from starting: if `ruflo` is missing, fails,
# or is still running after the timeout (it is then killed with its whole process group), boot
# records why in the summary line and the boot log, and starts sshd all the same.

set -u
set -o pipefail

reconcile_timeout=900
run_dir=/run/ruflo-shell
host_key_dir=""
sshd_base_config=/usr/local/share/ruflo-shell/sshd_config

while [ $# -gt 0 ]; do
    case "$1" in
        --reconcile-timeout) reconcile_timeout="${2:?--reconcile-timeout needs seconds}"; shift 2 ;;
        --run-dir) run_dir="${2:?--run-dir needs a directory}"; shift 2 ;;
        --host-key-dir) host_key_dir="${2:?--host-key-dir needs a directory}"; shift 2 ;;
        --sshd-base-config) sshd_base_config="${2:?--sshd-base-config needs a file}"; shift 2 ;;
        --) shift; break ;;
        *) echo "boot.sh: unknown argument: $1 (see the usage at the top of boot.sh)" >&2; exit 64 ;;
    esac
done
if [ $# -eq 0 ]; then
    echo "boot.sh: no sshd command after --; nothing to start" >&2
    exit 64
fi
case "$reconcile_timeout" in
    ''|*[!0-9]*) echo "boot.sh: --reconcile-timeout must be whole seconds, got '$reconcile_timeout'" >&2; exit 64 ;;
esac
# sshd silently skips an Include that matches no file and would run on its defaults (port 22,
# ~/.ssh/rc honoured, no AllowUsers): say what is wrong instead of starting that.
if ! [ -f "$sshd_base_config" ] || ! [ -r "$sshd_base_config" ]; then
    echo "boot.sh: the fixed sshd configuration $sshd_base_config is missing or unreadable; sshd was not started (rebuild the image, or pass --sshd-base-config)" >&2
    exit 78
fi

# Same default as ruflo.config.Settings.shell_state_path, so boot and `ruflo shell` agree.
state_dir="${RUFLO_SHELL_STATE_DIR:-${RUFLO_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/ruflo}/shell}"
summary_file="$state_dir/summary"
boot_log="$state_dir/boot.log"
host_key_dir="${host_key_dir:-$state_dir/host-keys}"

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

mkdir -p "$state_dir" 2>/dev/null || true
log() {
    local line
    line="[ruflo-shell boot] $(now) $*"
    echo "$line" >&2
    echo "$line" >>"$boot_log" 2>/dev/null || true
}

# Written through a temporary file so a login never reads half a line.
write_summary() {
    if printf '%s\n' "$1" >"$state_dir/.summary.boot.tmp" 2>/dev/null && mv -f "$state_dir/.summary.boot.tmp" "$summary_file"; then
        return 0
    fi
    log "could not write the summary to $summary_file"
}

# -- 1. reconcile, bounded -------------------------------------------------------------------
reconcile_child=""
on_signal() {
    # Stopping the pod while the reconcile runs: stop it too, and go without starting sshd.
    log "got $1 during the reconcile; stopping it"
    [ -n "$reconcile_child" ] && kill -TERM "$reconcile_child" 2>/dev/null
    exit 143
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

marker="$state_dir/.boot-started"
# Dated a second back: on filesystems with whole-second times, a summary the reconcile writes
# within this same second must still count as newer.
touch -d "@$(( $(date +%s) - 1 ))" "$marker" 2>/dev/null \
    || log "could not write $marker; cannot tell this boot's summary from an older one"

log "reconcile starting (timeout ${reconcile_timeout} s)"
if command -v ruflo >/dev/null 2>&1; then
    # timeout signals the whole process group, so package managers the reconcile started die too.
    timeout --kill-after=10 "$reconcile_timeout" ruflo shell reconcile &
    reconcile_child=$!
    wait "$reconcile_child"
    rc=$?
    reconcile_child=""
    case "$rc" in
        0) reason="" ;;
        124|137) reason="timed out after ${reconcile_timeout} s and was stopped" ;;
        *) reason="exited with code $rc" ;;
    esac
else
    rc=127
    reason="could not run: ruflo is not on PATH ($PATH)"
fi
trap - TERM INT

if [ -z "$reason" ]; then
    log "reconcile finished"
else
    log "reconcile $reason; starting sshd anyway"
fi
if ! [ "$summary_file" -nt "$marker" ]; then
    # The reconciler wrote no line of its own this boot: say so, rather than show an old ✓.
    write_summary "⚠ ruflo-shell: reconcile at boot ${reason:-finished but wrote no summary} @ $(now) — see $boot_log"
fi
rm -f "$marker"

# -- 2. sshd: host keys, session environment, runtime config ---------------------------------
mkdir -p "$run_dir" && chmod 700 "$run_dir" || log "could not prepare $run_dir"
mkdir -p "$host_key_dir" && chmod 700 "$host_key_dir" || log "could not prepare $host_key_dir"
# Host keys live on the home volume: a restarted pod keeps its identity, clients see no warning.
for type in ed25519 ecdsa rsa; do
    key="$host_key_dir/ssh_host_${type}_key"
    if [ ! -s "$key" ]; then
        if ssh-keygen -q -t "$type" -N '' -C "ruflo-shell" -f "$key" </dev/null >/dev/null 2>&1; then
            log "generated host key $key"
        else
            log "could not generate host key $key (ssh-keygen missing or failed)"
        fi
    fi
done

# sshd's SetEnv hands these to every session: login shells, `ssh host -- cmd`, mosh-server,
# scp. Profile scripts only reach login shells, so the container environment goes here.
skip_env() {
    case "$1" in
        HOME|USER|LOGNAME|SHELL|PWD|OLDPWD|SHLVL|_|TERM|MAIL|HOSTNAME|SSH_*) return 0 ;;
    esac
    return 1
}
setenv_line="SetEnv"
passed=0
while IFS= read -r name; do
    skip_env "$name" && continue
    value="${!name-}"
    case "$value" in
        *$'\n'*|*$'\r'*)
            log "not passed to ssh sessions: $name (its value spans lines, which sshd_config cannot hold)"
            continue ;;
    esac
    # sshd_config quoting: inside double quotes, only \\ and \" are escapes.
    value="${value//\\/\\\\}"
    value="${value//\"/\\\"}"
    setenv_line+=" \"$name=$value\""
    passed=$((passed + 1))
done < <(compgen -e | LC_ALL=C sort)

sshd_config="$run_dir/sshd_config"
{
    echo "# Written by boot.sh at $(now); the fixed part is $sshd_base_config."
    echo "# sshd keeps the first value of each option, so these come before the Include."
    for type in ed25519 ecdsa rsa; do
        [ -s "$host_key_dir/ssh_host_${type}_key" ] && echo "HostKey $host_key_dir/ssh_host_${type}_key"
    done
    echo "PidFile $run_dir/sshd.pid"
    [ "$passed" -gt 0 ] && echo "$setenv_line"
    echo "Include $sshd_base_config"
} >"$sshd_config.tmp" && chmod 600 "$sshd_config.tmp" && mv -f "$sshd_config.tmp" "$sshd_config" \
    || log "could not write $sshd_config"
log "container environment passed to ssh sessions: $passed variables"

# -- 3. sshd ----------------------------------------------------------------------------------
log "starting: $*"
exec "$@"
