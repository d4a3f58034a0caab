#!/usr/bin/env bash
# Runs one command as root inside a throwaway VM that boots Debian's kernel (linux-image-amd64)
# under QEMU in software emulation, for the kernel features this host's own kernel lacks
# (WireGuard, IPIP, IPVS, SCTP sockets). The guest has no disk: a tiny busybox initramfs
# mounts the host's root file system read-only over 9p (so node, iptables, etcd and the built
# project are there at the same paths), puts tmpfs on /tmp and /run, and runs the command in
# the project directory. Output and exit status come back through a writable 9p share.
#
#   scripts/vm/run.sh [--timeout SECONDS] [--mem MIB] [--cpus N] [--keep DIR] -- CMD [ARG...]
#
# Exit status: the command's own; 124 when the timeout ended the VM; 125 when the VM could
# not run it (no kernel, qemu or busybox: `scripts/vm/run.sh --check` says which).
# Never uses KVM: nested virtualisation hangs on this kind of host, TCG boots in seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
timeout=900 mem=3072 cpus=2 keep="" check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --check) check=1; shift ;;
    --) shift; break ;;
    *) echo "vm: unknown option $1 (see the header of $0)" >&2; exit 125 ;;
  esac
done

# The newest installed kernel image whose modules (with 9p) are on this host.
kver=""
for img in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
  v=${img#/boot/vmlinuz-}
  if [ -f "/lib/modules/$v/kernel/fs/9p/9p.ko" ]; then kver=$v; break; fi
done
why=""
[ -n "$kver" ] || why="no kernel image with 9p modules in /boot and /lib/modules (apt-get install linux-image-amd64)"
command -v qemu-system-x86_64 >/dev/null || why="${why:+$why; }no qemu-system-x86_64 (apt-get install qemu-system-x86)"
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx switch_root || why="${why:+$why; }no static busybox at /bin/busybox (apt-get install busybox-static)"
command -v gzip >/dev/null || why="${why:+$why; }no gzip"
if [ -n "$why" ]; then echo "vm: cannot boot the kernel-feature VM: $why" >&2; exit 125; fi
if [ "$check" = 1 ]; then echo "vm: ready (kernel $kver)"; exit 0; fi
[ $# -gt 0 ] || { echo "vm: no command given (… -- CMD [ARG...])" >&2; exit 125; }

job=$(mktemp -d /tmp/sluice-vm.XXXXXX)
qpid=""
cleanup() {
  [ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null || true
  if [ -n "$keep" ]; then mkdir -p "$keep" && cp -a "$job"/. "$keep"/; fi
  rm -rf "$job"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The initramfs: static busybox, our init, and the ten modules it loads.
rd="$job/initramfs"
mkdir -p "$rd/bin" "$rd/lib/modules/$kver"
cp /bin/busybox "$rd/bin/busybox"
cp "$here/init" "$rd/init"
chmod 0755 "$rd/init"
(cd "/lib/modules/$kver" && cp --parents kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko \
  kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko \
  kernel/drivers/virtio/virtio_pci.ko kernel/fs/netfs/netfs.ko kernel/fs/fscache/fscache.ko \
  kernel/net/9p/9pnet.ko kernel/net/9p/9pnet_virtio.ko kernel/fs/9p/9p.ko "$rd/lib/modules/$kver/")
(cd "$rd" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$job/initrd.gz"
rm -rf "$rd"

# The job: the guest runs it as PID 1 with the host's bash, so it must power the VM off.
{
  echo '#!/bin/bash'
  echo 'mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm'
  echo 'mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null'
  echo 'ip link set lo up'
  printf 'export PATH=%q HOME=/tmp TMPDIR=/tmp CI=%q SLUICE_IN_VM=1\n' "$PATH" "${CI:-}"
  for v in $(compgen -e | grep -E '^SLUICE_' || true); do printf 'export %s=%q\n' "$v" "${!v}"; done
  printf 'cd %q\n' "$PWD"
  printf '%q ' "$@"; printf '>%q 2>&1 </dev/null\n' "$job/output"
  printf 'echo $? >%q\n' "$job/status"
  echo 'sync'
  echo 'echo o >/proc/sysrq-trigger'
  echo 'sleep 10'
} >"$job/job.sh"
: >"$job/output"

qemu-system-x86_64 -accel tcg,thread=multi -m "$mem" -smp "$cpus" -nographic -no-reboot -nic none \
  -kernel "/boot/vmlinuz-$kver" -initrd "$job/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3 sluice_kver=$kver sluice_job=$job sluice_project=$project" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap" \
  -virtfs "local,path=$project,mount_tag=sluiceproject,security_model=passthrough,readonly=on,multidevs=remap" \
  -virtfs "local,path=$job,mount_tag=sluicejob,security_model=passthrough,multidevs=remap" \
  </dev/null >"$job/console" 2>&1 &
qpid=$!
# Stream the command's output while it runs, so a person (or CI's log) sees progress.
tail -n +1 -f "$job/output" --pid="$qpid" &
tpid=$!
deadline=$((SECONDS + timeout))
while kill -0 "$qpid" 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    kill -9 "$qpid" 2>/dev/null || true
    wait "$tpid" 2>/dev/null || true
    echo "vm: timed out after ${timeout}s; console:" >&2; tail -n 30 "$job/console" >&2
    exit 124
  fi
  sleep 0.5
done
wait "$qpid" 2>/dev/null || true
qpid=""
wait "$tpid" 2>/dev/null || true
if [ ! -s "$job/status" ]; then
  echo "vm: the guest ended without running the command; console:" >&2; tail -n 30 "$job/console" >&2
  exit 125
fi
exit "$(cat "$job/status")"
