/** Lease -> Peer: what the routing backends need to know about another node. */
import { formatCidr } from "../model/ip.js";
import type { Lease, Peer } from "../model/lease.js";

export function leaseToPeer(l: Lease): Peer {
  const name = l.attrs.NodeName ?? [l.subnet, l.subnet6].filter((c) => c !== undefined).map((c) => formatCidr(c)).join("&");
  return {
    name,
    subnet: l.subnet,
    subnet6: l.subnet6,
    publicIP: l.publicIP,
    publicIPv6: l.publicIPv6,
    backendType: l.attrs.BackendType,
    data: l.attrs.BackendData,
    data6: l.attrs.BackendV6Data,
  };
}
