# syntax=docker/dockerfile:1
# The Sluice image: sluice-agent (the entry point), sluicectl and sluice-cni, with the
# tools the agent drives (iptables with both backends, ipset, iproute2, conntrack).
#
#   docker build -t sluice:0.1.0 .
#
# Node.js 24 is a long-term-support line (maintenance LTS until April 2028), and the one
# the tests, the sandbox and the benchmarks run on (tools/node pins 24.x); package.json
# asks for >= 24 and the bundles target node24. A unit test keeps NODE_MAJOR, the tested
# major and engines equal: a new line (NODE_MAJOR=26) moves all three together.
ARG NODE_MAJOR=24

# Type check and bundle with the dev dependencies (tsc, esbuild).
FROM node:${NODE_MAJOR}-trixie-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# The packages the bundles leave external (netlink's prebuilt N-API addon, etcd3 and
# gRPC, @kubernetes/client-node), without dev dependencies.
FROM node:${NODE_MAJOR}-trixie-slim AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:${NODE_MAJOR}-trixie-slim
# Debian's iptables ships both backends (iptables-nft-* and iptables-legacy-*); the agent
# calls them by those names and picks the one the node uses (--iptables-backend).
# nftables: nft, for the native nftables dataplane (--dataplane nftables|auto).
# wireguard-tools: wg, which configures the wireguard backend's devices; wireguard-go: the
# userspace WireGuard used where the node's kernel has none.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ipset nftables iproute2 conntrack wireguard-tools wireguard-go \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/sluice
COPY package.json ./
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY scripts/install-cni.sh ./install-cni.sh
RUN ln -s /opt/sluice/dist/bin/sluice-agent.js /usr/local/bin/sluice-agent \
 && ln -s /opt/sluice/dist/bin/sluicectl.js /usr/local/bin/sluicectl \
 && ln -s /opt/sluice/dist/bin/sluice-cni.js /usr/local/bin/sluice-cni
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="Kubernetes networking add-on: flannel-style pod connectivity and Felix-style policy in one agent per node" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["node", "--enable-source-maps", "/opt/sluice/dist/bin/sluice-agent.js"]
