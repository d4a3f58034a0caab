/**
 * flannel's lease key names: "10.5.34.0-24" for IPv4, "10.5.34.0-24&fc00:0:0:22::-64"
 * for a dual-stack lease. The key is the identity of the lease: two nodes can never
 * hold the same key, which is what makes create-if-absent allocation safe.
 */
import { type Cidr, formatIp, parseCidr } from "./ip.js";

function part(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.ip })}-${c.prefixLen}`;
}

export function subnetKey(subnet: Cidr | undefined, subnet6: Cidr | undefined): string {
  if (subnet && subnet6) return `${part(subnet)}&${part(subnet6)}`;
  if (subnet) return part(subnet);
  if (subnet6) return part(subnet6);
  throw new Error("a lease needs at least one subnet");
}

/** Parses a key's last path segment; returns undefined for names that are not lease keys. */
export function parseSubnetKey(name: string): { subnet: Cidr | undefined; subnet6: Cidr | undefined } | undefined {
  const pieces = name.split("&");
  if (pieces.length > 2) return undefined;
  let subnet: Cidr | undefined;
  let subnet6: Cidr | undefined;
  for (const piece of pieces) {
    const dash = piece.lastIndexOf("-");
    if (dash <= 0) return undefined;
    let c: Cidr;
    try {
      c = parseCidr(`${piece.slice(0, dash)}/${piece.slice(dash + 1)}`, true);
    } catch {
      return undefined;
    }
    if (c.family === 4) {
      if (subnet) return undefined;
      subnet = c;
    } else {
      if (subnet6) return undefined;
      subnet6 = c;
    }
  }
  return { subnet, subnet6 };
}
