/**
 * UDP (flannel's `udp`, its original default): no kernel tunnel at all. A TUN device,
 * `sluice.udp` (flannel's `flannel0`), takes the packets routed to peers' subnets; the
 * agent reads each one, wraps it in a UDP datagram to the peer's public address on `Port`
 * (8285) and writes what arrives there back into the TUN device (udp/forwarder.ts).
 * Userspace copies every packet twice: a fallback for kernels or underlays without VXLAN,
 * not a fast path. 28 bytes of overhead (outer IPv4 and UDP headers); no lease data;
 * IPv4 only, as flannel's.
 */
import { z } from "zod";
import type { DesiredRouting, PeerDecision } from "../../routing/desired.js";
import { parseBackendKeys } from "../parseBackendKeys.js";
import type { BackendSpec, PeerRoute, RawBackend } from "../types.js";

export interface UdpBackend {
  type: "udp";
  port: number;
}

export const UDP_DEVICE = "sluice.udp";
/** flannel's udp port. */
export const UDP_DEFAULT_PORT = 8285;
/** The outer IPv4 and UDP headers. */
export const UDP_OVERHEAD = 28;

const keys = z.object({ Port: z.number().int().min(1).max(65535).optional() }).loose();

export const udpSpec: BackendSpec<UdpBackend> = {
  type: "udp",
  families: [4],

  parse(raw: RawBackend, source: string): UdpBackend {
    const k = parseBackendKeys(keys, raw, source);
    return { type: "udp", port: k.Port ?? UDP_DEFAULT_PORT };
  },

  podMtu: (_c, underlayMtu) => underlayMtu - UDP_OVERHEAD,

  // flannel writes no BackendData for udp: a peer is its public address and the one port.
  leaseData: () => ({}),

  devices: () => ({ 4: UDP_DEVICE }),

  encapsulation: (c, family) => (family === 4 ? { port: c.port } : undefined),

  routePeer(c: UdpBackend, _ctx, peer: PeerRoute, out: DesiredRouting): PeerDecision {
    if (peer.family !== 4) {
      const reason = `udp carries IPv4 only; peer ${peer.name}'s IPv6 subnet is not routed`;
      out.problems.push(reason);
      return { peer: peer.name, via: "skipped", reason };
    }
    out.routes.push({ dst: peer.subnet, gateway: undefined, dev: UDP_DEVICE, onlink: false, blackhole: false });
    // The forwarder's table: the peer's subnet is reached at its public address (and only it may send from there).
    out.tunnelPeers.push({ dev: UDP_DEVICE, name: peer.name, publicKey: "", endpoint: { ip: peer.publicIP, port: c.port }, allowedIps: [peer.subnet], keepaliveSeconds: 0 });
    return { peer: peer.name, via: "udp" };
  },
};
