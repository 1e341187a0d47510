#!/bin/sh
# Entrypoint of a lab Docker host (tests/harness/lab), run by tini as PID 1's child.
#
# 1. root's authorized key from $LAB_AUTHORIZED_KEY (the lab's public key; login by key only);
# 2. fresh SSH host keys (none are baked into the image: every lab host has its own); LAB_COMPOSE_V2=0 removes
#    the Compose v2 plugin (a host with Compose v1 only);
# 3. dockerd (lab-dockerd) with $LAB_STORAGE_DRIVER (default vfs), --iptables=false, logging to
#    /var/log/dockerd.log; when another driver than vfs does not come up, vfs is tried once (recorded in
#    /run/lab/storage-driver);
# 4. sshd (daemon, pid in /run/sshd.pid): `lab-sshd stop|start` takes SSH away and brings it back;
# 5. /run/lab/ready once `docker info` answers (what the test kit waits for), /run/lab/failed otherwise.
set -u
mkdir -p /run/lab /run/sshd /root/.ssh /var/log
chmod 0700 /root/.ssh
rm -f /run/lab/ready /run/lab/failed
if [ -n "${LAB_AUTHORIZED_KEY:-}" ]; then
  printf '%s\n' "$LAB_AUTHORIZED_KEY" >/root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
fi
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
# A Docker host with Compose v1 only (the v2 plugin is in the image when the machine that built it had one).
if [ "${LAB_COMPOSE_V2:-1}" = 0 ]; then rm -f /usr/libexec/docker/cli-plugins/docker-compose; fi

driver=${LAB_STORAGE_DRIVER:-vfs}
lab-dockerd start "$driver"
if ! lab-dockerd wait 60 && [ "$driver" != vfs ]; then
  echo "lab: dockerd did not come up with $driver, trying vfs" >>/var/log/dockerd.log
  lab-dockerd stop
  driver=vfs
  lab-dockerd start vfs
fi
if docker info >/dev/null 2>&1; then
  echo "$driver" >/run/lab/storage-driver
  if /usr/sbin/sshd -E /var/log/sshd.log; then touch /run/lab/ready; else touch /run/lab/failed; fi
else
  touch /run/lab/failed
fi
# Stay up (tini reaps and forwards signals; `docker stop` ends dockerd with the group).
exec sleep infinity
