/**
 * Pure per-backend route computation: from this node's view (its subnets, its on-link
 * underlay networks, the VXLAN device names) and the peers' leases to the routes,
 * neighbour entries and FDB entries that should exist, and the peers whose traffic the
 * host rules trust. A peer is routed only once peerTrust.ts accepts it. Golden-tested; no
 * kernel here.
 */
import type { Backend } from "../config/networkConfig.js";
import { type Cidr, type Family, type IpAddr, cidrContainsIp, formatCidr, formatIp, ipEquals } from "../model/ip.js";
import type { Peer } from "../model/lease.js";
import type { DesiredFdb, DesiredNeighbor, DesiredRoute, DesiredRouting, PeerDecision } from "./desired.js";
import { type PeerClaim, trustPeers } from "./peerTrust.js";

export interface LocalView {
  backend: Backend;
  subnet: Cidr | undefined;
  subnet6: Cidr | undefined;
  publicIP: IpAddr | undefined;
  publicIPv6: IpAddr | undefined;
  /** The prefixes directly connected on the underlay interface (peers inside are on-link). */
  onLinkNetworks: readonly Cidr[];
  vxlanDevice: string;
  vxlanDevice6: string;
  blackholeRoute: boolean;
  /** The cluster networks: a peer subnet outside them is refused. */
  network?: Cidr | undefined;
  network6?: Cidr | undefined;
}

export function vxlanDeviceName(vni: number, family: Family): string {
  return family === 4 ? `sluice.${vni}` : `sluice-v6.${vni}`;
}

const onLink = (view: LocalView, ip: IpAddr): boolean => view.onLinkNetworks.some((n) => cidrContainsIp(n, ip));

export function computeRouting(view: LocalView, peers: readonly Peer[]): DesiredRouting {
  const out: DesiredRouting = { routes: [], neighbors: [], fdb: [], decisions: [], problems: [], refused: [], trusted: [] };
  const sorted = [...peers].sort((a, b) => a.name.localeCompare(b.name));
  const claims: { peer: Peer; claim: PeerClaim }[] = [];
  for (const peer of sorted) {
    if (isSelf(view, peer)) continue;
    for (const family of [4, 6] as const) {
      const subnet = family === 4 ? peer.subnet : peer.subnet6;
      const publicIP = family === 4 ? peer.publicIP : peer.publicIPv6;
      const localSubnet = family === 4 ? view.subnet : view.subnet6;
      if (!subnet || !localSubnet) continue; // this family is not in use on both ends
      if (!publicIP) {
        out.problems.push(`peer ${peer.name}: no IPv${family} public address for ${formatCidr(subnet)}`);
        continue;
      }
      claims.push({ peer, claim: { name: peer.name, family, subnet, publicIP } });
    }
  }
  const trust = trustPeers(view, claims.map((c) => c.claim));
  for (const { peer, claim } of claims) {
    const refused = trust.refused.get(claim);
    if (refused !== undefined) {
      out.refused.push(refused);
      out.decisions.push({ peer: peer.name, via: "skipped", reason: refused });
      continue;
    }
    const decision = routeOnePeer(view, peer, claim.family, claim.subnet, claim.publicIP, out);
    out.decisions.push(decision);
    if (decision.via !== "skipped") out.trusted.push(claim);
  }
  if (view.blackholeRoute) {
    for (const s of [view.subnet, view.subnet6]) {
      if (s) out.routes.push({ dst: s, gateway: undefined, dev: undefined, onlink: false, blackhole: true });
    }
  }
  return out;
}

function isSelf(view: LocalView, peer: Peer): boolean {
  if (view.publicIP && peer.publicIP && ipEquals(view.publicIP, peer.publicIP)) return true;
  if (view.publicIPv6 && peer.publicIPv6 && ipEquals(view.publicIPv6, peer.publicIPv6)) return true;
  return false;
}

function routeOnePeer(view: LocalView, peer: Peer, family: Family, subnet: Cidr, publicIP: IpAddr, out: DesiredRouting): PeerDecision {
  const backend = view.backend;
  const direct: DesiredRoute = { dst: subnet, gateway: publicIP, dev: undefined, onlink: false, blackhole: false };
  if (backend.type === "host-gw") {
    if (!onLink(view, publicIP)) {
      const reason = `host-gw needs every peer on the same L2 segment, but ${formatIp(publicIP)} (${peer.name}) is not on-link; use vxlan with DirectRouting for routed underlays`;
      out.problems.push(reason);
      return { peer: peer.name, via: "skipped", reason };
    }
    out.routes.push(direct);
    return { peer: peer.name, via: "direct" };
  }
  if (backend.directRouting && onLink(view, publicIP)) {
    out.routes.push(direct);
    return { peer: peer.name, via: "direct", reason: "DirectRouting: peer is on-link" };
  }
  const mac = family === 4 ? peer.vtepMAC : peer.vtepMAC6;
  if (!mac) {
    const reason = `peer ${peer.name} has no VtepMAC in its IPv${family} backend data (backend ${peer.backendType || "unknown"})`;
    out.problems.push(reason);
    return { peer: peer.name, via: "skipped", reason };
  }
  const dev = family === 4 ? view.vxlanDevice : view.vxlanDevice6;
  const tunnelIp: IpAddr = { family, value: subnet.ip };
  const route: DesiredRoute = { dst: subnet, gateway: tunnelIp, dev, onlink: true, blackhole: false };
  const neigh: DesiredNeighbor = { dev, ip: tunnelIp, mac };
  const fdb: DesiredFdb = { dev, mac, dst: publicIP };
  out.routes.push(route);
  out.neighbors.push(neigh);
  out.fdb.push(fdb);
  return { peer: peer.name, via: "vxlan" };
}

/**
 * The MTU pods get: the underlay's minus VXLAN's overhead (50 bytes over IPv4, 70 over
 * an IPv6 underlay, which flannel leaves out), unless the backend sets one.
 */
export function podMtu(backend: Backend, underlayMtu: number, ipv6Underlay = false): number {
  if (backend.type === "host-gw") return underlayMtu;
  return backend.mtu ?? underlayMtu - (ipv6Underlay ? 70 : 50);
}

/** Renders desired routing as `ip`-like lines, for golden tests and `sluicectl`. */
export function describeRouting(d: DesiredRouting): string[] {
  const lines: string[] = [];
  for (const r of d.routes) {
    if (r.blackhole) lines.push(`route blackhole ${formatCidr(r.dst)}`);
    else lines.push(`route ${formatCidr(r.dst)} via ${formatIp(r.gateway as IpAddr)}${r.dev ? ` dev ${r.dev}` : ""}${r.onlink ? " onlink" : ""}`);
  }
  for (const n of d.neighbors) lines.push(`neigh ${formatIp(n.ip)} lladdr ${n.mac} dev ${n.dev} permanent`);
  for (const f of d.fdb) lines.push(`fdb ${f.mac} dst ${formatIp(f.dst)} dev ${f.dev} self permanent`);
  for (const p of d.problems) lines.push(`problem ${p}`);
  for (const r of d.refused) lines.push(`refused ${r}`);
  return lines;
}
