/**
 * The udp forwarder's view of its peers (pure): which peer a pod packet's destination
 * belongs to, and whether a datagram's sender may deliver the packet it carries (its inner
 * source must lie in that very peer's subnet and its destination in this node's: the
 * forwarder is no relay, and no peer speaks for another's pods).
 */
import type { Cidr } from "../../model/ip.js";

export interface UdpPeer {
  name: string;
  /** The peer's public IPv4 address, dotted. */
  address: string;
  port: number;
  subnet: Cidr;
}

const maskOf = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
const inCidr = (addr: number, c: Cidr): boolean => ((addr & maskOf(c.prefixLen)) >>> 0) === Number(c.ip);

export class UdpPeerTable {
  /** Prefix length -> network (u32) -> peer: subnets of one cluster network are few lengths. */
  private readonly bySubnet = new Map<number, Map<number, UdpPeer>>();
  private readonly byAddress = new Map<string, UdpPeer[]>();

  constructor(
    readonly peers: readonly UdpPeer[],
    readonly local: Cidr | undefined,
  ) {
    for (const p of peers) {
      if (p.subnet.family !== 4) continue;
      let m = this.bySubnet.get(p.subnet.prefixLen);
      if (!m) this.bySubnet.set(p.subnet.prefixLen, (m = new Map()));
      m.set(Number(p.subnet.ip), p);
      this.byAddress.set(p.address, [...(this.byAddress.get(p.address) ?? []), p]);
    }
  }

  /** The peer whose subnet holds `dst` (an IPv4 address as u32). */
  peerFor(dst: number): UdpPeer | undefined {
    for (const [len, m] of this.bySubnet) {
      const p = m.get((dst & maskOf(len)) >>> 0);
      if (p) return p;
    }
    return undefined;
  }

  /** Whether a datagram from `address` (any source port: NAT may change it) may deliver a packet `src` -> `dst` to this node. */
  admits(address: string, src: number, dst: number): boolean {
    if (!this.local || !inCidr(dst, this.local)) return false;
    return (this.byAddress.get(address) ?? []).some((p) => inCidr(src, p.subnet));
  }

  /** A key that changes when anything the forwarder uses does. */
  get key(): string {
    return JSON.stringify([this.local && [String(this.local.ip), this.local.prefixLen], this.peers.map((p) => [p.name, p.address, p.port, String(p.subnet.ip), p.subnet.prefixLen])]);
  }
}
