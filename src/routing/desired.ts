/** The kernel state the routing backends ask for: plain data, diffed by the dataplane. */
import type { Cidr, Family, IpAddr } from "../model/ip.js";

export interface DesiredRoute {
  dst: Cidr;
  /** Next hop; absent for a blackhole route. */
  gateway: IpAddr | undefined;
  /** Device name; undefined means "whatever the kernel picks for the gateway" (host-gw). */
  dev: string | undefined;
  onlink: boolean;
  blackhole: boolean;
}

export interface DesiredNeighbor {
  dev: string;
  ip: IpAddr;
  mac: string;
}

export interface DesiredFdb {
  dev: string;
  mac: string;
  dst: IpAddr;
}

/**
 * One peer of a tunnel the agent configures itself: a keyed device (WireGuard: the peer's
 * public key) or the udp backend's forwarder (no key: the peer is its endpoint). Where to
 * send to (undefined: wait for the peer to reach us), the pod subnets it may carry.
 */
export interface DesiredTunnelPeer {
  dev: string;
  /** The peer node's name, for logs. */
  name: string;
  /** WireGuard's public key; empty for the keyless udp forwarder. */
  publicKey: string;
  endpoint: { ip: IpAddr; port: number } | undefined;
  allowedIps: Cidr[];
  /** Seconds between keepalives; 0 is off. */
  keepaliveSeconds: number;
}

/** How the route to one peer was chosen, for logs and `sluicectl`. */
export interface PeerDecision {
  peer: string;
  via: "vxlan" | "wireguard" | "ipip" | "udp" | "direct" | "skipped";
  reason?: string;
}

/** A peer of one family that got a route: the host rules trust its underlay address and its subnet. */
export interface TrustedPeer {
  name: string;
  family: Family;
  subnet: Cidr;
  publicIP: IpAddr;
}

export interface DesiredRouting {
  routes: DesiredRoute[];
  neighbors: DesiredNeighbor[];
  fdb: DesiredFdb[];
  tunnelPeers: DesiredTunnelPeer[];
  decisions: PeerDecision[];
  /** Problems to report (never fatal): a host-gw peer that is not on-link, a peer without VTEP MAC. */
  problems: string[];
  /** Peers refused on trust (routing/peerTrust.ts), with the reason: no route, traffic not trusted. */
  refused: string[];
  /** Every routed peer, per family. */
  trusted: TrustedPeer[];
}
