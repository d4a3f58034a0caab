/** A route to a peer's subnet via its public address, no device named: host-gw, and vxlan's DirectRouting. */
import type { DesiredRouting } from "../routing/desired.js";
import type { PeerRoute } from "./types.js";

export function directRoute(peer: PeerRoute, out: DesiredRouting): void {
  out.routes.push({ dst: peer.subnet, gateway: peer.publicIP, dev: undefined, onlink: false, blackhole: false });
}
