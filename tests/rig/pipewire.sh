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
#
# Graph after `start`:
#   mic_feed  (Audio/Sink, pw-loopback capture side)  ──▶  virt_mic (Audio/Source)
#   vdimedia_null_sink  (Audio/Sink "spk", support.null-audio-sink, monitor recordable)
# plus WirePlumber (session manager; exposes the nodes as devices) and pipewire-pulse
# (PulseAudio API for Chromium). The graph runs a 960-frame quantum (20 ms at 48 kHz) because
# pipewiresink pushes one buffer per graph cycle (FIELD-NOTES).
set -euo pipefail

usage() { echo "usage: $0 start|stop|restart DIR" >&2; exit 2; }
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

die() { echo "pipewire.sh: $*" >&2; exit 1; }

# Starts a command in the background with its output in DIR/log/NAME.log and records its pid.
spawn() {
  local name=$1; shift
  "$@" >"$log/$name.log" 2>&1 &
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

# True when a node with node.name=$1 exists in the graph.
node_exists() {
  pw-dump 2>/dev/null | grep -q "\"node.name\": \"$1\""
}

# Creates the null speaker unless it exists, then gives it 3 s to appear. It lingers after pw-cli
# exits, so it needs no process of its own; but on a loaded machine pw-cli was seen to exit
# before the server had made the node, which then never appeared: wait_for calls this again.
ensure_null_sink() {
  node_exists "$SPK" && return 0
  pw-cli create-node adapter "{ factory.name=support.null-audio-sink node.name=$SPK \
    node.description=spk media.class=Audio/Sink object.linger=true \
    audio.position=[FL FR] monitor.channel-volumes=true }" >/dev/null 2>&1 || return 1
  local i
  for i in $(seq 30); do node_exists "$SPK" && return 0; sleep 0.1; done
  return 1
}

# True when WirePlumber has published its default-device metadata (it is managing the graph).
wireplumber_ready() {
  pw-metadata -n default 0 2>/dev/null | grep -q 'default.audio.sink'
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
  for b in pipewire wireplumber pipewire-pulse pw-loopback pw-cli pw-dump pw-metadata dbus-daemon; do
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
  # Private WirePlumber state, so stored defaults of another rig do not leak in.
  export XDG_STATE_HOME="$dir/state" XDG_CONFIG_HOME="$dir/config"
}

# Starts PipeWire, WirePlumber, pipewire-pulse and the virtual devices (the bus runs).
start_pipewire() {
  spawn pipewire pipewire
  wait_for "pipewire socket" test -S "$run/pipewire-0"
  wait_for "pipewire to answer" pw-cli info 0

  spawn wireplumber wireplumber
  spawn pipewire-pulse pipewire-pulse

  # 20 ms cycles (see header); the graph clock's rate stays 48 kHz.
  pw-metadata -n settings 0 clock.force-quantum "$QUANTUM" >/dev/null


  # Virtual mic: whatever plays into mic_feed comes out of virt_mic.
  spawn pw-loopback pw-loopback -m '[ FL FR ]' \
    --capture-props="media.class=Audio/Sink node.name=$MIC_FEED node.description=mic_feed" \
    --playback-props="media.class=Audio/Source node.name=$MIC node.description=virt_mic"

  wait_for "node $SPK" ensure_null_sink
  wait_for "node $MIC" node_exists "$MIC"
  wait_for "node $MIC_FEED" node_exists "$MIC_FEED"
  wait_for "wireplumber" wireplumber_ready
  wait_for "pipewire-pulse socket" test -S "$run/pulse/native"

  # Make the rig's devices the defaults so "default" means the rig's mic and speaker.
  pw-metadata -n default 0 default.configured.audio.sink "{ \"name\": \"$SPK\" }" Spa:String:JSON >/dev/null || true
  pw-metadata -n default 0 default.configured.audio.source "{ \"name\": \"$MIC\" }" Spa:String:JSON >/dev/null || true
}

# A user's PipeWire restarting mid-call (systemctl --user restart pipewire): every PipeWire
# process of the rig is killed (SIGKILL, as a crash; clients see the socket close) and started
# again with the same virtual devices; the session bus and DIR/env stay as they were.
restart() {
  [ -f "$pids" ] || die "no rig running in $dir"
  rig_env
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
  mv "$keep" "$pids"
  echo "pipewire.sh: PipeWire stopped in $dir"
  start_pipewire
  echo "pipewire.sh: PipeWire restarted in $dir"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  *) usage ;;
esac
