/**
 * flannel's host rules, as our chains: masquerading of pod traffic that leaves the
 * cluster network (never pod-to-pod), and the FORWARD accept rules that Docker >= 1.13
 * made necessary. The forward chain is the last stop in SLUICE-FORWARD: policy
 * dispatch (added by the policy engine) runs before it, so it never bypasses policy.
 *
 * Underlay trust (when the agent knows its peers): policy takes a pod address as the pod's
 * identity, so only known peers may deliver traffic that carries one.
 * - VXLAN: UDP to the VXLAN port whose source is not a known peer's underlay address is
 *   dropped first thing in INPUT (it would be decapsulated and forwarded to pods); so is
 *   IPIP (IP protocol 4) from such an address.
 * - A pod may not send that encapsulation itself: forwarded UDP to the tunnel's port with a
 *   source inside the cluster network is dropped first thing in FORWARD. Masqueraded to
 *   this node's address, a pod's hand-made VXLAN packet would reach a peer from a trusted
 *   underlay address and be decapsulated there with any pod address inside (Felix drops
 *   workloads' VXLAN and IPIP for the same reason). Not for an authenticated tunnel
 *   (WireGuard): a packet without the node's key is never decapsulated.
 * - Forwarded traffic that arrives from the underlay interface or the VXLAN device with a
 *   source inside the cluster network is dropped first thing in FORWARD unless that source
 *   lies in a known peer's subnet (never this node's own, never an unallocated or refused one).
 * Both match only that traffic: anything else the host sends, receives or forwards (other
 * UDP ports, NodePort clients, traffic from outside the cluster network) is not looked at.
 * Peers are two ipsets per family, slc4-peer-hosts (hash:ip) and slc4-peer-nets (hash:net),
 * so a peer joining or leaving changes members, not rules. What this cannot stop: a
 * neighbour on the underlay that forges a known peer's address (outer source of VXLAN, or a
 * peer pod's address with host-gw); an encrypting backend is the defence against that.
 */
import { type Cidr, type Family, type IpAddr, formatCidr, formatIp } from "../model/ip.js";
import type { IpsetSpec } from "./ipsetSpec.js";
import type { PolicyRender } from "./policyContract.js";
import { policyRawTableSpec } from "./policyText.js";
import type { ChainSpec, HookSpec, Ruleset, TableSpec } from "./ruleset.js";
import { ACCEPT, DROP, type MarkBits, type Match, RETURN, type Rule, dst, inIface, inSet, markIs, protocol, rule, src } from "./rules.js";

export const CHAIN_POSTROUTING = "SLUICE-POSTROUTING";
export const CHAIN_FORWARD = "SLUICE-FORWARD";
export const CHAIN_INPUT = "SLUICE-INPUT";
export const CHAIN_OUTPUT = "SLUICE-OUTPUT";
/** kube-proxy marks traffic it wants masqueraded itself; we leave it alone. */
export const KUBE_PROXY_MASQ_MARK: MarkBits = { value: 0x4000, mask: 0x4000 };

export interface HostRulesInput {
  family: 4 | 6;
  /** The cluster network of this family. */
  network: Cidr;
  /** This node's subnet of this family (undefined until leased). */
  subnet: Cidr | undefined;
  ipMasq: boolean;
  randomFully: boolean;
  forwardRules: boolean;
  /** Rules from the policy engine that run before the cluster accept rules. */
  forwardPolicyRules?: Rule[];
  /** The peers this node trusts and where their traffic arrives; no underlay rules without it. */
  underlay?: UnderlayTrust | undefined;
}

/** What the underlay trust rules of one family need to know. */
export interface UnderlayTrust {
  /** The underlay interface: host-gw and DirectRouting peers' pod traffic arrives on it. */
  iface: string;
  /** This family's tunnel device and how peers' encapsulated traffic arrives on it, when the backend has one. */
  tunnel: TunnelTrust | undefined;
  /** The known (routed) peers of this family. */
  peers: ReadonlyArray<{ publicIP: IpAddr; subnet: Cidr }>;
}

/**
 * A tunnel's device and its encapsulation: UDP to `port` (VXLAN's, WireGuard's) or IP
 * protocol 4 (IPIP); `authenticated` when only a peer's key opens it (WireGuard).
 */
export type TunnelTrust = { device: string; authenticated?: boolean } & ({ protocol?: "udp"; port: number } | { protocol: "ipencap" });

/** The match for a tunnel's encapsulated packets. */
function encapMatches(t: TunnelTrust): Match[] {
  if (t.protocol === "ipencap") return [protocol("ipencap")];
  return [protocol("udp"), { kind: "ports", protocol: "udp", dst: { from: t.port, to: t.port } }];
}

export const peerHostsSet = (family: Family): string => `slc${family}-peer-hosts`;
export const peerNetsSet = (family: Family): string => `slc${family}-peer-nets`;

/** SLUICE-INPUT, first: encapsulated traffic (UDP to the tunnel's port, VXLAN's; IPIP) from an underlay address that is no known peer's is dropped. */
export function underlayInputRules(i: HostRulesInput): Rule[] {
  const u = i.underlay;
  if (!u?.tunnel) return [];
  return [rule(DROP, ...encapMatches(u.tunnel), inSet(peerHostsSet(i.family), ["src"], true))];
}

/** SLUICE-FORWARD, first: no pod sends the tunnel's encapsulation; a cluster source from the underlay must be in a known peer's subnet. */
export function underlayForwardRules(i: HostRulesInput): Rule[] {
  const u = i.underlay;
  if (!u) return [];
  const net = formatCidr(i.network);
  const t = u.tunnel;
  const noWorkloadEncap = t && !t.authenticated ? [rule(DROP, src(net), ...encapMatches(t))] : [];
  return [...noWorkloadEncap, ...[u.iface, ...(t ? [t.device] : [])].map((dev) => rule(DROP, inIface(dev), src(net), inSet(peerNetsSet(i.family), ["src"], true)))];
}

/** The sets the underlay rules name (empty sets when no peer is known: nothing is trusted). */
export function underlayIpsets(i: HostRulesInput): IpsetSpec[] {
  const u = i.underlay;
  if (!u) return [];
  const uniq = (xs: string[]): string[] => [...new Set(xs)].sort();
  const sets: IpsetSpec[] = [{ name: peerNetsSet(i.family), type: "hash:net", family: i.family, members: uniq(u.peers.map((p) => formatCidr(p.subnet))) }];
  if (u.tunnel) sets.push({ name: peerHostsSet(i.family), type: "hash:ip", family: i.family, members: uniq(u.peers.map((p) => formatIp(p.publicIP))) });
  return sets.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Which tables a ruleset covers: the agent applies nat and filter on separate schedules.
 * "filter" also covers the raw table: its anti-spoofing rules come from the same policy
 * render and must wait for it just the same.
 */
export type TableChoice = "nat" | "filter";

export function masqueradeRules(i: HostRulesInput): Rule[] {
  if (!i.subnet) return [];
  const net = formatCidr(i.network);
  const sub = formatCidr(i.subnet);
  const multicast = i.family === 4 ? "224.0.0.0/4" : "ff00::/8";
  const masq = { kind: "masquerade", ...(i.randomFully ? { randomFully: true } : {}) } as const;
  return [
    rule(RETURN, markIs(KUBE_PROXY_MASQ_MARK)),
    // pod-to-pod inside the cluster network keeps its source address
    rule(RETURN, src(sub), dst(net)),
    rule(RETURN, src(net), dst(sub)),
    // traffic from outside to local pods (e.g. via a NodePort) is not ours to rewrite
    rule(RETURN, src(net, true), dst(sub)),
    // pods talking to the world
    rule(masq, src(net), dst(multicast, true)),
    // the host (or anything outside the network) talking to remote pods
    rule(masq, src(net, true), dst(net)),
  ];
}

export function forwardRules(i: HostRulesInput): Rule[] {
  const rules = [...(i.forwardPolicyRules ?? [])];
  if (i.forwardRules) {
    const net = formatCidr(i.network);
    rules.push(rule(ACCEPT, src(net)), rule(ACCEPT, dst(net)));
  }
  return rules;
}

/**
 * The whole ruleset of one family: flannel's host rules, the underlay trust rules (their
 * sets: underlayIpsets), and, when the policy engine has rendered, its chains merged into
 * the same filter table. They must be one table spec, because the planner removes every
 * owned chain the desired table does not list. The raw table holds the policy's
 * anti-spoofing chains, or none of ours (without policy), and goes first: a new pod's
 * source check is in place before its filter chain can accept anything.
 */
export function hostRuleset(i: HostRulesInput, policy?: PolicyRender, only?: readonly TableChoice[]): Ruleset {
  const tables: TableSpec[] = [];
  const want = (t: TableChoice): boolean => only === undefined || only.includes(t);
  if (want("nat")) {
    const masq = i.ipMasq ? masqueradeRules(i) : [];
    tables.push(table("nat", masq.length ? [{ name: CHAIN_POSTROUTING, rules: masq }] : [], masq.length ? [{ builtin: "POSTROUTING", target: CHAIN_POSTROUTING }] : []));
  }
  if (want("filter")) {
    tables.push(policy ? policyRawTableSpec(policy) : table("raw", [], []));
    const chains: ChainSpec[] = [];
    const hooks: HookSpec[] = [];
    const add = (builtin: string, name: string, rules: Rule[]): void => {
      if (rules.length === 0) return;
      chains.push({ name, rules });
      hooks.push({ builtin, target: name });
    };
    add("FORWARD", CHAIN_FORWARD, [...underlayForwardRules(i), ...forwardRules({ ...i, forwardPolicyRules: [...(policy?.forwardRules ?? []), ...(i.forwardPolicyRules ?? [])] })]);
    add("INPUT", CHAIN_INPUT, [...underlayInputRules(i), ...(policy?.inputRules ?? [])]);
    add("OUTPUT", CHAIN_OUTPUT, policy?.outputRules ?? []);
    chains.push(...(policy?.chains ?? []));
    tables.push(table("filter", chains, hooks));
  }
  return { family: i.family, tables };
}

function table(name: TableSpec["table"], chains: ChainSpec[], hooks: HookSpec[]): TableSpec {
  return { table: name, chains, hooks };
}
