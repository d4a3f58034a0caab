/**
 * IPIP (flannel's `ipip`): pod packets inside an outer IPv4 header (IP protocol 4) to the
 * peer's public address, 20 bytes of overhead, no lease data. One device, `sluice.ipip`
 * (flannel's `flannel.ipip`; the kernel's own `tunl0` fallback device is left alone); per
 * peer a route via the peer's public address, onlink, through it. DirectRouting routes an
 * on-link peer over the underlay directly instead, as host-gw does. IPv4 only, as flannel's.
 */
import { z } from "zod";
import type { DesiredRouting, PeerDecision } from "../../routing/desired.js";
import { directRoute } from "../directRoute.js";
import { parseBackendKeys } from "../parseBackendKeys.js";
import type { BackendSpec, PeerRoute, RawBackend, RouteContext } from "../types.js";

export interface IpipBackend {
  type: "ipip";
  directRouting: boolean;
}

export const IPIP_DEVICE = "sluice.ipip";
/** The outer IPv4 header. */
export const IPIP_OVERHEAD = 20;

const keys = z.object({ DirectRouting: z.boolean().optional() }).loose();

export const ipipSpec: BackendSpec<IpipBackend> = {
  type: "ipip",
  families: [4],

  parse(raw: RawBackend, source: string): IpipBackend {
    const k = parseBackendKeys(keys, raw, source);
    return { type: "ipip", directRouting: k.DirectRouting ?? false };
  },

  podMtu: (_c, underlayMtu) => underlayMtu - IPIP_OVERHEAD,

  // flannel writes no BackendData for ipip (null); the public address is all a peer needs.
  leaseData: () => ({}),

  devices: () => ({ 4: IPIP_DEVICE }),

  encapsulation: (_c, family) => (family === 4 ? { protocol: "ipencap" } : undefined),

  routePeer(c: IpipBackend, ctx: RouteContext, peer: PeerRoute, out: DesiredRouting): PeerDecision {
    if (peer.family !== 4) {
      const reason = `ipip carries IPv4 only; peer ${peer.name}'s IPv6 subnet is not routed`;
      out.problems.push(reason);
      return { peer: peer.name, via: "skipped", reason };
    }
    if (c.directRouting && ctx.onLink(peer.publicIP)) {
      directRoute(peer, out);
      return { peer: peer.name, via: "direct", reason: "DirectRouting: peer is on-link" };
    }
    out.routes.push({ dst: peer.subnet, gateway: peer.publicIP, dev: IPIP_DEVICE, onlink: true, blackhole: false });
    return { peer: peer.name, via: "ipip" };
  },
};
