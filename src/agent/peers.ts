/** Lease -> Peer: what the routing backends need to know about another node. */
import { formatCidr } from "../model/ip.js";
import type { Lease, Peer } from "../model/lease.js";

/** The VTEP MAC from a lease's (V6) backend data, if it carries a well-formed one. */
export function vtepMacOf(data: unknown): string | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const mac = (data as Record<string, unknown>)["VtepMAC"];
  return typeof mac === "string" && /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac) ? mac.toLowerCase() : undefined;
}

export function leaseToPeer(l: Lease): Peer {
  const name = l.attrs.NodeName ?? [l.subnet, l.subnet6].filter((c) => c !== undefined).map((c) => formatCidr(c)).join("&");
  return {
    name,
    subnet: l.subnet,
    subnet6: l.subnet6,
    publicIP: l.publicIP,
    publicIPv6: l.publicIPv6,
    backendType: l.attrs.BackendType,
    vtepMAC: vtepMacOf(l.attrs.BackendData),
    vtepMAC6: vtepMacOf(l.attrs.BackendV6Data),
  };
}
