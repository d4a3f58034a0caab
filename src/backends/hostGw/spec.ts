/**
 * host-gw: no encapsulation. Each peer's subnet is routed via the peer's public address,
 * which must be on-link (every node on one L2 segment); a peer that is not is reported and
 * left unrouted (vxlan with DirectRouting is the answer for routed underlays).
 */
import { formatIp } from "../../model/ip.js";
import type { DesiredRouting, PeerDecision } from "../../routing/desired.js";
import { directRoute } from "../directRoute.js";
import type { BackendSpec, PeerRoute, RouteContext } from "../types.js";

export interface HostGwBackend {
  type: "host-gw";
}

export const hostGwSpec: BackendSpec<HostGwBackend> = {
  type: "host-gw",
  // flannel's host-gw reads no keys of its own; neither do we.
  parse: () => ({ type: "host-gw" }),
  podMtu: (_c, underlayMtu) => underlayMtu,
  leaseData: () => ({}),
  devices: () => ({}),
  encapsulation: () => undefined,
  routePeer(_c: HostGwBackend, ctx: RouteContext, peer: PeerRoute, out: DesiredRouting): PeerDecision {
    if (!ctx.onLink(peer.publicIP)) {
      const reason = `host-gw needs every peer on the same L2 segment, but ${formatIp(peer.publicIP)} (${peer.name}) is not on-link; use vxlan with DirectRouting for routed underlays`;
      out.problems.push(reason);
      return { peer: peer.name, via: "skipped", reason };
    }
    directRoute(peer, out);
    return { peer: peer.name, via: "direct" };
  },
};
