/**
 * Pure route computation: from this node's view (its subnets, its on-link underlay
 * networks, its backend) and the peers' leases to the routes, neighbour entries and FDB
 * entries that should exist, and the peers whose traffic the host rules trust. A peer is
 * routed only once peerTrust.ts accepts it; how it is reached is its backend's decision
 * (src/backends/<name>/spec.ts). Golden-tested; no kernel here.
 */
import { type Backend, specOf } from "../backends/specs.js";
import { type Cidr, type IpAddr, cidrContainsIp, formatCidr, formatIp, ipEquals } from "../model/ip.js";
import type { Peer } from "../model/lease.js";
import type { DesiredRouting } from "./desired.js";
import { type PeerClaim, trustPeers } from "./peerTrust.js";

export interface LocalView {
  backend: Backend;
  subnet: Cidr | undefined;
  subnet6: Cidr | undefined;
  publicIP: IpAddr | undefined;
  publicIPv6: IpAddr | undefined;
  /** The prefixes directly connected on the underlay interface (peers inside are on-link). */
  onLinkNetworks: readonly Cidr[];
  blackholeRoute: boolean;
  /** The cluster networks: a peer subnet outside them is refused. */
  network?: Cidr | undefined;
  network6?: Cidr | undefined;
}

const onLink = (view: LocalView, ip: IpAddr): boolean => view.onLinkNetworks.some((n) => cidrContainsIp(n, ip));

export function computeRouting(view: LocalView, peers: readonly Peer[]): DesiredRouting {
  const out: DesiredRouting = { routes: [], neighbors: [], fdb: [], tunnelPeers: [], decisions: [], problems: [], refused: [], trusted: [] };
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
  const spec = specOf(view.backend);
  const ctx = { onLink: (ip: IpAddr) => onLink(view, ip) };
  for (const { peer, claim } of claims) {
    const refused = trust.refused.get(claim);
    if (refused !== undefined) {
      out.refused.push(refused);
      out.decisions.push({ peer: peer.name, via: "skipped", reason: refused });
      continue;
    }
    const decision = spec.routePeer(view.backend, ctx, { ...claim, data: claim.family === 4 ? peer.data : peer.data6, backendType: peer.backendType }, out);
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

/** The MTU pods get: the backend's rule over the underlay's (an IPv6 underlay may cost more). */
export function podMtu(backend: Backend, underlayMtu: number, ipv6Underlay = false): number {
  return specOf(backend).podMtu(backend, underlayMtu, ipv6Underlay);
}

/** Renders desired routing as `ip`-like lines, for golden tests and `sluicectl`. */
export function describeRouting(d: DesiredRouting): string[] {
  const lines: string[] = [];
  for (const r of d.routes) {
    if (r.blackhole) lines.push(`route blackhole ${formatCidr(r.dst)}`);
    else lines.push(`route ${formatCidr(r.dst)}${r.gateway ? ` via ${formatIp(r.gateway)}` : ""}${r.dev ? ` dev ${r.dev}` : ""}${r.onlink ? " onlink" : ""}`);
  }
  for (const n of d.neighbors) lines.push(`neigh ${formatIp(n.ip)} lladdr ${n.mac} dev ${n.dev} permanent`);
  for (const f of d.fdb) lines.push(`fdb ${f.mac} dst ${formatIp(f.dst)} dev ${f.dev} self permanent`);
  for (const t of d.tunnelPeers) {
    const endpoint = t.endpoint ? ` endpoint ${t.endpoint.ip.family === 6 ? `[${formatIp(t.endpoint.ip)}]` : formatIp(t.endpoint.ip)}:${t.endpoint.port}` : " (no endpoint)";
    lines.push(`${t.publicKey ? `wg ${t.dev} peer ${t.publicKey}` : `udp ${t.dev} peer`} (${t.name})${endpoint} allowed-ips ${t.allowedIps.map(formatCidr).join(",")}${t.keepaliveSeconds ? ` persistent-keepalive ${t.keepaliveSeconds}` : ""}`);
  }
  for (const p of d.problems) lines.push(`problem ${p}`);
  for (const r of d.refused) lines.push(`refused ${r}`);
  return lines;
}
