#!/usr/bin/env bash
# Starts Postgres (127.0.0.1:5432) and NATS with JetStream (127.0.0.1:4222)
# when they are installed but not listening, with this machine kind's own
# commands (README, Services). Used by scripts/demo.sh and .ci/run.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  echo "port $1 did not open" >&2
  return 1
}

if ! port_open 5432; then
  if ls /etc/postgresql >/dev/null 2>&1; then
    echo "starting Postgres"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    wait_port 5432
  else
    echo "Postgres is not listening on 127.0.0.1:5432 and is not installed here" >&2
  fi
fi
if ! port_open 4222; then
  if [[ -x /usr/sbin/nats-server ]]; then
    echo "starting NATS (JetStream)"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    wait_port 4222
  else
    echo "NATS is not listening on 127.0.0.1:4222 and /usr/sbin/nats-server is not installed" >&2
  fi
fi
