#!/bin/sh
# lab-dockerd start [DRIVER]|stop|restart|wait [SECONDS]|status: this lab host's dockerd (the Docker daemon fault).
#
# start uses DRIVER, else the driver it last came up with, else $LAB_STORAGE_DRIVER (vfs by default); the flags
# are the lab's: --iptables=false, address ranges and a cgroup parent of its own, the API on TCP 2375 too when
# $LAB_DOCKERD_TCP is set (for the test kit; --tls=false: no 15 s warning pause). Log: /var/log/dockerd.log.
# stop ends it as a service manager would (SIGTERM: the Engines stop with it; restart policies bring them back).
PID=/run/lab/dockerd.pid

running() { [ -s "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }

start() {
  running && return 0
  driver=${1:-$(cat /run/lab/storage-driver 2>/dev/null || echo "${LAB_STORAGE_DRIVER:-vfs}")}
  echo "lab: dockerd --storage-driver=$driver" >>/var/log/dockerd.log
  set -- --storage-driver="$driver" --iptables=false --ip6tables=false \
    --bip=10.213.0.1/24 --default-address-pool=base=10.214.0.0/16,size=24 \
    --cgroup-parent="${LAB_CGROUP_PARENT:-lab-$(hostname)}" --host=unix:///var/run/docker.sock
  if [ -n "${LAB_DOCKERD_TCP:-}" ]; then set -- "$@" --host=tcp://0.0.0.0:2375 --tls=false; fi
  dockerd "$@" >>/var/log/dockerd.log 2>&1 &
  echo $! >"$PID"
}

wait_up() {  # $1: seconds; fails early when dockerd exited
  i=0
  while [ "$i" -lt "$(( ${1:-60} * 4 ))" ]; do
    docker info >/dev/null 2>&1 && return 0
    running || return 1
    sleep 0.25
    i=$((i + 1))
  done
  return 1
}

stop() {
  running || { rm -f "$PID"; return 0; }
  kill "$(cat "$PID")"
  i=0
  while running && [ "$i" -lt 240 ]; do sleep 0.25; i=$((i + 1)); done
  if running; then kill -9 "$(cat "$PID")"; fi
  rm -f "$PID" /var/run/docker.pid
}

case "${1:-status}" in
  start) start "${2:-}" && wait_up 60 ;;
  stop) stop ;;
  restart) stop; start && wait_up 60 ;;
  wait) wait_up "${2:-60}" ;;
  status) if running; then echo running; else echo stopped; exit 3; fi ;;
  *) echo "usage: lab-dockerd start [DRIVER]|stop|restart|wait [SECONDS]|status" >&2; exit 2 ;;
esac
