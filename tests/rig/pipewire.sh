#!/usr/bin/env bash
# Headless PipeWire test rig: a private PipeWire graph with a virtual microphone and a null
# speaker, for tests on machines without sound cards (CI, containers, gVisor), as root and
# without systemd. See tests/rig/README.md.
#
#   tests/rig/pipewire.sh start DIR   # start everything below DIR, print and write DIR/env
#   tests/rig/pipewire.sh stop DIR    # stop what `start DIR` started (pids in DIR/pids)
#   tests/rig/pipewire.sh restart DIR # restart PipeWire, WirePlumber, pipewire-pulse and the
#                                     # virtual devices as a user's PipeWire restart would;
#                                     # the session bus and DIR/env stay valid
#   tests/rig/pipewire.sh check DIR   # exit 0 when the rig is whole (devices, defaults, …)
#
# Graph after `start` (the devices are PipeWire configuration, DIR/config/pipewire/…):
#   mic_feed  (Audio/Sink, module-loopback capture side)  ──▶  virt_mic (Audio/Source)
#   vdimedia_null_sink  (Audio/Sink "spk", support.null-audio-sink, monitor recordable)
# plus WirePlumber (session manager; exposes the nodes as devices) and pipewire-pulse
# (PulseAudio API for Chromium). The graph runs a 960-frame quantum (20 ms at 48 kHz) because
# pipewiresink pushes one buffer per graph cycle (FIELD-NOTES). On any failure the script prints
# the tail of every log and keeps a copy of DIR/log (RIG_FAILED_LOGS, default
# $TMPDIR/vdimedia-rig-failed-TIME-PID), since tests remove DIR.
set -euo pipefail

usage() { echo "usage: $0 start|stop|restart|check DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
run="$dir/run"
pids="$dir/pids"
log="$dir/log"

# Nodes the rig creates; tests refer to them by these names.
MIC_FEED=mic_feed
MIC=virt_mic
SPK=vdimedia_null_sink
QUANTUM=960
TIMEOUT_S=${RIG_TIMEOUT_S:-30}
# Every pw-* probe gets this long (s): a client of a server that accepted and then stalls (being
# killed, or not yet running its loop) would otherwise wait for good.
PROBE_S=5

# Prints the tail of every log (so a CI failure shows why), keeps a copy of DIR/log outside
# DIR (tests remove DIR), and exits 1.
die() {
  echo "pipewire.sh: $*" >&2
  if [ -d "$log" ]; then
    local keep="${RIG_FAILED_LOGS:-${TMPDIR:-/tmp}/vdimedia-rig-failed-$(date +%Y%m%dT%H%M%S)-$$}"
    mkdir -p "$keep" && cp -a "$log/." "$keep/" 2>/dev/null || true
    echo "pipewire.sh: logs kept in $keep; their tails:" >&2
    local f
    for f in "$log"/*.log; do
      [ -f "$f" ] || continue
      echo "----- $(basename "$f") (last 40 lines)" >&2
      tail -n 40 "$f" >&2 || true
    done
    # Only the rig's own graph (never a PipeWire outside the rig).
    if [ "${XDG_RUNTIME_DIR:-}" = "$run" ]; then
      echo "----- graph" >&2
      timeout "$PROBE_S" pw-cli ls Node 2>&1 | grep -E 'id [0-9]+|node.name|media.class' >&2 || true
      timeout "$PROBE_S" pw-metadata -n default 0 >&2 2>&1 || true
    fi
  fi
  exit 1
}

# Starts a command in the background with its output appended to DIR/log/NAME.log (a restart
# keeps the previous run's lines, after a marker) and records its pid.
spawn() {
  local name=$1; shift
  echo "===== pipewire.sh: $name started $(date -u +%FT%T.%NZ)" >>"$log/$name.log"
  "$@" >>"$log/$name.log" 2>&1 &
  echo "$! $name" >>"$pids"
}

# Waits (up to TIMEOUT_S) until the shell condition "$@" holds.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT_S))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${TIMEOUT_S}s waiting for $what (logs in $log)"
    sleep 0.1
  done
}

# How many nodes have node.name=$1.
node_count() {
  timeout "$PROBE_S" pw-dump --no-colors 2>/dev/null | grep -c "\"node.name\": \"$1\"" || true
}

# True when exactly one node has node.name=$1 (two would make `--target NAME` ambiguous).
node_exists() {
  [ "$(node_count "$1")" = 1 ]
}

# True when the settings metadata forces the rig's quantum.
quantum_forced() {
  timeout "$PROBE_S" pw-metadata -n settings 0 clock.force-quantum 2>/dev/null | grep -q "value:'$QUANTUM'"
}

force_quantum() {
  quantum_forced && return 0
  timeout "$PROBE_S" pw-metadata -n settings 0 clock.force-quantum "$QUANTUM" >/dev/null 2>&1 || true
  quantum_forced
}

# True when WirePlumber has made the rig's speaker and mic the defaults (it publishes
# default.audio.* only once it manages the graph).
defaults_are_the_rigs() {
  local md
  md=$(timeout "$PROBE_S" pw-metadata -n default 0 2>/dev/null) || return 1
  grep -q "key:'default.audio.sink' value:'{\"name\":\"$SPK\"}'" <<<"$md" &&
    grep -q "key:'default.audio.source' value:'{\"name\":\"$MIC\"}'" <<<"$md"
}

# Asks WirePlumber (once its default metadata exists) to make the rig's devices the defaults;
# true once it did.
configure_defaults() {
  defaults_are_the_rigs && return 0
  timeout "$PROBE_S" pw-metadata -n default 0 2>/dev/null | grep -q "default.audio.sink" || return 1
  timeout "$PROBE_S" pw-metadata -n default 0 default.configured.audio.sink "{ \"name\": \"$SPK\" }" Spa:String:JSON >/dev/null 2>&1 || true
  timeout "$PROBE_S" pw-metadata -n default 0 default.configured.audio.source "{ \"name\": \"$MIC\" }" Spa:String:JSON >/dev/null 2>&1 || true
  defaults_are_the_rigs
}

# True when the rig is whole: PipeWire answers, each device exists once, the quantum is forced,
# WirePlumber made the rig's devices the defaults and pipewire-pulse listens.
healthy() {
  timeout "$PROBE_S" pw-cli info 0 >/dev/null 2>&1 || { echo "PipeWire does not answer"; return 1; }
  local n
  for n in "$SPK" "$MIC" "$MIC_FEED"; do
    node_exists "$n" || { echo "node $n: $(node_count "$n") instances"; return 1; }
  done
  quantum_forced || { echo "quantum not forced to $QUANTUM"; return 1; }
  defaults_are_the_rigs || { echo "defaults are not $SPK / $MIC"; return 1; }
  [ -S "$run/pulse/native" ] || { echo "no pipewire-pulse socket"; return 1; }
}

# The rig's devices as PipeWire configuration (a drop-in read by `pipewire` only): PipeWire
# creates them itself before it serves any client, so they come back with every (re)start.
# Creating them from clients after the server was up (pw-cli create-node, a pw-loopback
# process) raced the server on a loaded machine: pw-cli could exit before the node was made,
# and the node then never appeared (2 of 4 restarts), or a retry made it twice.
write_config() {
  local d="$XDG_CONFIG_HOME/pipewire/pipewire.conf.d"
  mkdir -p "$d"
  cat >"$d/50-vdimedia-rig.conf" <<CONF
# Written by tests/rig/pipewire.sh; rewritten at each start.
context.objects = [
  # Null speaker "spk": what plays here is discarded; record its monitor.
  { factory = adapter
    args = {
      factory.name = support.null-audio-sink
      node.name = $SPK
      node.description = spk
      media.class = Audio/Sink
      audio.position = [ FL FR ]
      monitor.channel-volumes = true
    }
  }
]
context.modules = [
  # Virtual mic: whatever plays into $MIC_FEED comes out of $MIC.
  { name = libpipewire-module-loopback
    args = {
      audio.position = [ FL FR ]
      capture.props = { media.class = Audio/Sink node.name = $MIC_FEED node.description = $MIC_FEED }
      playback.props = { media.class = Audio/Source node.name = $MIC node.description = $MIC }
    }
  }
]
CONF
}

stop() {
  [ -f "$pids" ] || { echo "pipewire.sh: nothing to stop in $dir"; return 0; }
  # Reverse start order: clients first, then session manager, server and bus.
  tac "$pids" | while read -r pid name; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  # Give them a moment to exit cleanly, then make sure.
  local deadline=$((SECONDS + 3))
  while [ $SECONDS -lt $deadline ]; do
    local alive=0
    while read -r pid name; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$pids"
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  while read -r pid name; do
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  done <"$pids"
  rm -f "$pids"
  echo "pipewire.sh: stopped rig in $dir"
}

start() {
  for b in pipewire wireplumber pipewire-pulse pw-cli pw-dump pw-metadata dbus-daemon timeout; do
    command -v "$b" >/dev/null || die "$b not installed (scripts/install-deps.sh)"
  done
  if [ -f "$pids" ]; then
    stop >/dev/null
  fi
  mkdir -p "$run" "$log"
  chmod 700 "$run"
  : >"$pids"
  # A failed start leaves nothing running behind it.
  trap 'rc=$?; if [ $rc -ne 0 ]; then echo "pipewire.sh: start failed, stopping the rig" >&2; stop >/dev/null; fi' EXIT

  rig_env
  mkdir -p "$XDG_STATE_HOME" "$XDG_CONFIG_HOME"
  write_config

  # WirePlumber exits without a session bus.
  spawn dbus dbus-daemon --session --address="$DBUS_SESSION_BUS_ADDRESS" --nofork --nopidfile
  wait_for "session bus" test -S "$run/bus"

  start_pipewire

  {
    echo "export XDG_RUNTIME_DIR=$run"
    echo "export DBUS_SESSION_BUS_ADDRESS=unix:path=$run/bus"
    echo "unset PIPEWIRE_REMOTE PULSE_SERVER"
  } >"$dir/env"
  trap - EXIT
  cat "$dir/env"
}

# Exports what every PipeWire process of the rig runs with (start and restart).
rig_env() {
  export XDG_RUNTIME_DIR="$run"
  export DBUS_SESSION_BUS_ADDRESS="unix:path=$run/bus"
  # Never talk to a PipeWire outside the rig.
  unset PIPEWIRE_REMOTE PIPEWIRE_RUNTIME_DIR PULSE_SERVER
  # Private WirePlumber state and PipeWire configuration (the rig's devices), so another
  # rig's stored defaults or devices do not leak in.
  export XDG_STATE_HOME="$dir/state" XDG_CONFIG_HOME="$dir/config"
}

# Starts PipeWire (which makes the virtual devices), WirePlumber and pipewire-pulse (the bus
# runs), and returns once the rig is whole (see `healthy`).
start_pipewire() {
  # Sockets of a killed server: waiting for "the socket exists" must wait for the new one.
  rm -f "$run/pipewire-0" "$run/pulse/native"
  spawn pipewire pipewire
  wait_for "pipewire socket" test -S "$run/pipewire-0"
  wait_for "pipewire to answer" timeout "$PROBE_S" pw-cli info 0
  wait_for "node $SPK" node_exists "$SPK"
  wait_for "node $MIC" node_exists "$MIC"
  wait_for "node $MIC_FEED" node_exists "$MIC_FEED"
  # 20 ms cycles (see header); the graph clock's rate stays 48 kHz.
  wait_for "clock.force-quantum $QUANTUM" force_quantum

  spawn wireplumber wireplumber
  spawn pipewire-pulse pipewire-pulse
  # Make the rig's devices the defaults so "default" means the rig's mic and speaker.
  wait_for "wireplumber to make $SPK and $MIC the defaults" configure_defaults
  wait_for "pipewire-pulse socket" test -S "$run/pulse/native"
  local why
  why=$(healthy) || die "rig not whole after start: $why"
}

# A user's PipeWire restarting mid-call (systemctl --user restart pipewire): every PipeWire
# process of the rig is killed (SIGKILL, as a crash; clients see the socket close) and started
# again with the same virtual devices; the session bus and DIR/env stay as they were.
restart() {
  [ -f "$pids" ] || die "no rig running in $dir"
  rig_env
  write_config
  local keep
  keep=$(mktemp)
  while read -r pid name; do
    if [ "$name" = dbus ]; then
      echo "$pid $name" >>"$keep"
    elif kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$pids"
  local deadline=$((SECONDS + 3))
  while [ $SECONDS -lt $deadline ]; do
    local alive=0
    while read -r pid name; do
      [ "$name" = dbus ] && continue
      kill -0 "$pid" 2>/dev/null && alive=1
    done <"$pids"
    [ $alive -eq 0 ] && break
    sleep 0.05
  done
  while read -r pid name; do
    [ "$name" = dbus ] && continue
    ! kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) survived SIGKILL for 3 s"
  done <"$pids"
  mv "$keep" "$pids"
  echo "pipewire.sh: PipeWire stopped in $dir"
  start_pipewire
  echo "pipewire.sh: PipeWire restarted in $dir"
}

# Exits 0 when the rig is whole (see `healthy`), else prints what is missing and exits 1.
check() {
  [ -f "$pids" ] || die "no rig running in $dir"
  rig_env
  local why
  why=$(healthy) || { echo "pipewire.sh: rig in $dir not whole: $why" >&2; exit 1; }
  echo "pipewire.sh: rig in $dir is whole"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  check) check ;;
  *) usage ;;
esac
