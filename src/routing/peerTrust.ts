/**
 * Which peers this node trusts, family by family. A peer's lease (etcd) or Node (Kubernetes)
 * is written by that node, so a broken or compromised node could claim a subnet that is
 * not its own and pull other nodes' traffic to it. A peer's subnet of a family is routed,
 * and its underlay address and subnet trusted by the host rules, only when:
 *
 *   1. its public address is one a host may have (not 0.0.0.0, ::, loopback, multicast);
 *   2. the subnet lies inside the cluster network of that family;
 *   3. it overlaps neither this node's subnet nor another candidate peer's (both of an
 *      overlapping pair are refused: which one is right cannot be told from here).
 *
 * Everything refused comes back with a reason naming the peer (the agent warns; no route).
 * Pure; it does not decide how a trusted peer is reached (backends.ts does).
 */
import { type Cidr, type Family, type IpAddr, cidrContains, cidrOverlaps, formatCidr, formatIp, unusableHostAddress } from "../model/ip.js";

/** One peer's claim for one family. */
export interface PeerClaim {
  name: string;
  family: Family;
  subnet: Cidr;
  publicIP: IpAddr;
}

export interface TrustView {
  /** This node's subnets. */
  subnet: Cidr | undefined;
  subnet6: Cidr | undefined;
  /** The cluster networks; a family without one is not checked against it. */
  network?: Cidr | undefined;
  network6?: Cidr | undefined;
}

export interface TrustDecision {
  trusted: PeerClaim[];
  /** Each refused claim (the objects given), with its reason. */
  refused: Map<PeerClaim, string>;
}

export function trustPeers(view: TrustView, claims: readonly PeerClaim[]): TrustDecision {
  const refused = new Map<PeerClaim, string>();
  const refuse = (c: PeerClaim, why: string): void => {
    if (!refused.has(c)) refused.set(c, `peer ${c.name}: ${why}; not routed, its traffic not trusted`);
  };
  const candidates: PeerClaim[] = [];
  for (const c of claims) {
    const network = c.family === 4 ? view.network : view.network6;
    const local = c.family === 4 ? view.subnet : view.subnet6;
    const unusable = unusableHostAddress(c.publicIP);
    if (unusable !== undefined) refuse(c, `public address ${unusable}`);
    else if (network !== undefined && !cidrContains(network, c.subnet)) refuse(c, `subnet ${formatCidr(c.subnet)} is outside the cluster network ${formatCidr(network)}`);
    else if (local !== undefined && cidrOverlaps(local, c.subnet)) refuse(c, `subnet ${formatCidr(c.subnet)} overlaps this node's subnet ${formatCidr(local)}`);
    else candidates.push(c);
  }
  for (let i = 0; i < candidates.length; i++) {
    for (let j = i + 1; j < candidates.length; j++) {
      const a = candidates[i] as PeerClaim;
      const b = candidates[j] as PeerClaim;
      if (a.family !== b.family || !cidrOverlaps(a.subnet, b.subnet)) continue;
      refuse(a, `subnet ${formatCidr(a.subnet)} overlaps ${formatCidr(b.subnet)} of peer ${b.name} (${formatIp(b.publicIP)})`);
      refuse(b, `subnet ${formatCidr(b.subnet)} overlaps ${formatCidr(a.subnet)} of peer ${a.name} (${formatIp(a.publicIP)})`);
    }
  }
  return { trusted: candidates.filter((c) => !refused.has(c)), refused };
}
