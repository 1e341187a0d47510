#!/bin/sh
# lab-sshd stop|start|status: take this lab host's SSH away (existing sessions too) and bring it back.
case "${1:-status}" in
  stop)
    [ -s /run/sshd.pid ] && kill "$(cat /run/sshd.pid)" 2>/dev/null
    pkill -x sshd 2>/dev/null   # the per-connection children of this lab host's own sshd
    while pgrep -x sshd >/dev/null 2>&1; do sleep 0.1; done
    rm -f /run/sshd.pid ;;
  start)
    pgrep -x sshd >/dev/null 2>&1 || /usr/sbin/sshd -E /var/log/sshd.log ;;
  status)
    pgrep -x sshd >/dev/null 2>&1 && echo running || { echo stopped; exit 3; } ;;
  *) echo "usage: lab-sshd stop|start|status" >&2; exit 2 ;;
esac
