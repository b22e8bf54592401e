#!/usr/bin/env bash
# A real TURN server (coturn's `turnserver`) on loopback for call tests, with long-term
# credentials (RFC 8656 §9.2, coturn --lt-cred-mech) and a certificate from a test CA made here.
#
#   tests/turn/coturn.sh start DIR   # start, wait until it listens, write DIR/env
#   tests/turn/coturn.sh stop DIR    # stop what `start DIR` started (DIR/turnserver.pid)
#
# Listens on 127.0.0.1 only: UDP+TCP 3478 (turn:) and TLS 5349 (turns:), relays on 127.0.0.1
# ports 49160–49200 and allows loopback peers (the far end is on 127.0.0.1 too; coturn denies
# loopback peers by default). coturn accepts plain TCP on its TLS port too, so a client that
# skips TLS on `turns:` still gets an allocation: DIR/turnserver.log tells them apart (tests
# check its "TLS/TCP" lines).
#
# DIR/env (shell syntax): TURN_USER, TURN_PASSWORD, TURN_REALM, TURN_PORT, TURN_TLS_PORT,
# TURN_CA (PEM: the test CA that signed the server certificate, the one to trust), TURN_LOG.
# Env: TURN_PORT (3478), TURN_TLS_PORT (5349), TURN_USER (vdimedia), TURN_PASSWORD (a fixed test
# value), TURN_REALM (vdimedia.test).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
pidfile="$dir/turnserver.pid"
die() { echo "coturn.sh: $*" >&2; exit 1; }

port=${TURN_PORT:-3478}
tls_port=${TURN_TLS_PORT:-5349}
user=${TURN_USER:-vdimedia}
password=${TURN_PASSWORD:-s3cret-turn-pass}
realm=${TURN_REALM:-vdimedia.test}

listening() {
  # ss lists sockets in this network namespace; both TCP listeners and the UDP socket.
  ss -Hltn "sport = :$port" | grep -q . && ss -Hltn "sport = :$tls_port" | grep -q . \
    && ss -Hlun "sport = :$port" | grep -q .
}

case $cmd in
start)
  command -v turnserver >/dev/null || die "turnserver not found (apt-get install coturn)"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && die "already running (pid $(cat "$pidfile"))"
  # A throw-away CA and a server certificate for 127.0.0.1 (IP SAN) signed by it: clients trust
  # exactly this CA (TURN_CA). Not one self-signed certificate: that one is a CA certificate
  # (basicConstraints CA:TRUE), which WebPKI verifiers (rustls) refuse as a server certificate.
  ossl() { openssl "$@" 2>>"$dir/openssl.log" >/dev/null || die "openssl $1 failed; see $dir/openssl.log"; }
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/ca-key.pem" -out "$dir/ca-cert.pem" -days 1 -subj "/CN=vdimedia test TURN CA"
  ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/turn-key.pem" -out "$dir/turn.csr" -subj /CN=127.0.0.1
  printf '%s\n' subjectAltName=IP:127.0.0.1 basicConstraints=critical,CA:FALSE \
    keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth >"$dir/turn-ext.cnf"
  ossl x509 -req -in "$dir/turn.csr" -CA "$dir/ca-cert.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days 1 -extfile "$dir/turn-ext.cnf" -out "$dir/turn-cert.pem"
  : >"$dir/turnserver.log"
  # --simple-log: one file, no date suffix; -v: session/allocation lines the tests read.
  turnserver -n -V \
    --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
    --listening-port="$port" --tls-listening-port="$tls_port" \
    --min-port=49160 --max-port=49200 \
    --allow-loopback-peers --no-dtls --no-cli --no-multicast-peers \
    --lt-cred-mech --user="$user:$password" --realm="$realm" --userdb="$dir/turndb" \
    --cert="$dir/turn-cert.pem" --pkey="$dir/turn-key.pem" \
    --pidfile="$dir/turnserver.pid.coturn" \
    --log-file="$dir/turnserver.log" --simple-log \
    >"$dir/turnserver.stdout" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    listening && break
    kill -0 "$(cat "$pidfile")" 2>/dev/null || die "turnserver exited; see $dir/turnserver.log"
    sleep 0.1
  done
  listening || die "turnserver does not listen on 127.0.0.1:$port/$tls_port after 10 s"
  cat >"$dir/env" <<EOF
export TURN_USER="$user"
export TURN_PASSWORD="$password"
export TURN_REALM="$realm"
export TURN_PORT="$port"
export TURN_TLS_PORT="$tls_port"
export TURN_CA="$dir/ca-cert.pem"
export TURN_LOG="$dir/turnserver.log"
EOF
  cat "$dir/env"
  ;;
stop)
  [ -f "$pidfile" ] || exit 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
  ;;
*) usage ;;
esac
