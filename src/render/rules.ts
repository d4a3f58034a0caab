/**
 * Packet-filter rules as data: what the renderers (policy.ts, hostRules.ts, kubeIpvs.ts)
 * produce and the dataplanes consume. A rule is a conjunction of matches and one action;
 * nothing here is iptables syntax. src/render/iptablesFormat.ts is the one module that
 * turns these into iptables-restore text (and puts the matches into iptables-save's order),
 * so a second dataplane (native nftables) can take the same rules and write its own syntax.
 *
 * What is semantic and what is not yet:
 * - matches and actions: fully (interfaces, addresses, sets, protocols, ports, marks, ...);
 * - sets are named by their kernel name (`slc4-…`), and their members are still the text
 *   `ipset add` takes (IpsetSpec in ipsetSpec.ts, kept as is because the ipset driver reads
 *   it); the member syntax (`nomatch` exceptions, `<ip>,<proto>:<port>`) is written by the
 *   formatter's ipset helpers, not by the renderers.
 */
import type { Family } from "../model/ip.js";

export type AddrDir = "src" | "dst";
export type PortProtocol = "tcp" | "udp" | "sctp";
/** IP protocols by the names iptables-save prints (the ICMPv6 one is `ipv6-icmp`; IPIP, protocol 4, is `ipencap`, which nft also knows). */
export type IpProtocol = PortProtocol | "icmp" | "ipv6-icmp" | "ipencap";
export type CtState = "NEW" | "RELATED" | "ESTABLISHED" | "INVALID" | "UNTRACKED";

/** A port or an inclusive range; `not`: every other port. */
export interface PortRange {
  from: number;
  to: number;
  not?: boolean;
}

/** A mark test or a mark write: the bits of `mask` compared with (or set to) `value`. */
export interface MarkBits {
  value: number;
  mask: number;
}

export type Match =
  /** The interface a packet came in on (`in`) or leaves by (`out`); `prefix`: any interface whose name starts with `name`. */
  | { kind: "iface"; dir: "in" | "out"; name: string; prefix?: boolean }
  /** Source or destination address in a CIDR (`10.244.1.5/32`, `10.0.0.0/8`), or not in it. */
  | { kind: "addr"; dir: AddrDir; cidr: string; not?: boolean }
  | { kind: "protocol"; protocol: IpProtocol }
  /**
   * Membership of the packet's fields in a set: one direction per dimension of the set
   * (`["src"]` for an address set, `["dst", "dst"]` for (destination address, destination port)).
   */
  | { kind: "set"; set: string; dirs: AddrDir[]; not?: boolean }
  /** Port tests of one protocol (the rule must also match that protocol). */
  | { kind: "ports"; protocol: PortProtocol; src?: PortRange; dst?: PortRange }
  /** An ICMP (family 4) or ICMPv6 (family 6) type, and code when given (the rule must also match the protocol). */
  | { kind: "icmp"; family: Family; type: number; code?: number; not?: boolean }
  /** The packet mark's bits under `mask` equal `value`. */
  | ({ kind: "mark" } & MarkBits)
  | { kind: "conntrack"; states: CtState[] };

export type Action =
  | { kind: "accept" }
  | { kind: "drop" }
  | { kind: "return" }
  /** Continue in `chain`, then come back (a RETURN there resumes after this rule). */
  | { kind: "jump"; chain: string }
  /** Continue in `chain` without coming back (a RETURN there returns from this rule's chain). */
  | { kind: "goto"; chain: string }
  /** Sets the bits of `mask` to `value` and goes on with the next rule. */
  | ({ kind: "setMark" } & MarkBits)
  /** A kernel log line with `prefix`, at most `limit.perMinute` a minute after a burst of `limit.burst`. */
  | { kind: "log"; prefix: string; limit?: { perMinute: number; burst: number } }
  /** nat POSTROUTING: the source becomes the outgoing interface's address; `randomFully`: fully random source ports. */
  | { kind: "masquerade"; randomFully?: boolean };

export interface Rule {
  match: Match[];
  action: Action;
}

export const rule = (action: Action, ...match: Match[]): Rule => ({ match, action });

// Constructors for the matches and actions the renderers use most; they only spell the data.
export const inIface = (name: string, prefix = false): Match => ({ kind: "iface", dir: "in", name, ...(prefix ? { prefix } : {}) });
export const outIface = (name: string, prefix = false): Match => ({ kind: "iface", dir: "out", name, ...(prefix ? { prefix } : {}) });
export const src = (cidr: string, not = false): Match => ({ kind: "addr", dir: "src", cidr, ...(not ? { not } : {}) });
export const dst = (cidr: string, not = false): Match => ({ kind: "addr", dir: "dst", cidr, ...(not ? { not } : {}) });
export const protocol = (p: IpProtocol): Match => ({ kind: "protocol", protocol: p });
export const inSet = (set: string, dirs: AddrDir[], not = false): Match => ({ kind: "set", set, dirs, ...(not ? { not } : {}) });
export const markIs = (m: MarkBits): Match => ({ kind: "mark", value: m.value, mask: m.mask });
export const ctState = (...states: CtState[]): Match => ({ kind: "conntrack", states });

export const ACCEPT: Action = { kind: "accept" };
export const DROP: Action = { kind: "drop" };
export const RETURN: Action = { kind: "return" };
export const jump = (chain: string): Action => ({ kind: "jump", chain });
export const goTo = (chain: string): Action => ({ kind: "goto", chain });
export const setMark = (m: MarkBits): Action => ({ kind: "setMark", value: m.value, mask: m.mask });

/** The names of the sets a rule's matches test. */
export const setsOf = (r: Rule): string[] => r.match.flatMap((m) => (m.kind === "set" ? [m.set] : []));

/** A key equal for equal rules (the renderers drop duplicate lines by it). */
export const ruleKey = (r: Rule | readonly Rule[] | readonly Match[]): string => JSON.stringify(r);
