/**
 * The policy IR: what every policy source (Kubernetes NetworkPolicy, the Admin and
 * Baseline tiers of ClusterNetworkPolicy, Sluice's GlobalNetworkPolicy) is translated
 * into before rendering and evaluation. The renderer and the evaluator only know this shape.
 *
 * - A policy belongs to a tier and has a priority inside it; evaluation runs tier by tier
 *   (admin, namespace, baseline), policies in (priority, id) order.
 * - `subject` is the set of pods it applies to: pods matching a pod selector in the
 *   namespaces named or selected.
 * - `ingress`/`egress` hold its rules per direction; `undefined` means the policy does not
 *   apply in that direction. In the namespace tier, applying in a direction isolates the
 *   selected pods in that direction (even with zero rules: deny all).
 * - A rule matches when ANY of its peers and ANY of its ports match, and (when given) NONE
 *   of its notPeers / notPorts, its source ports and its `self` restriction match; its
 *   action decides: allow and deny end evaluation, pass skips the rest of its tier (admin:
 *   on to the namespace tier; baseline: on to the default), log records the packet and
 *   evaluation goes on with the next rule.
 */
import type { Protocol } from "../model/endpoint.js";
import type { LabelSelector } from "../config/k8sSchemas.js";
import { canonicalSelector } from "./selectors.js";

export type Tier = "admin" | "namespace" | "baseline";
export const TIERS: readonly Tier[] = ["admin", "namespace", "baseline"];

export type Direction = "ingress" | "egress";
export const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];

/** allow: accept (ends evaluation); deny: drop; pass: skip the rest of the tier; log: log and go on. */
export type RuleAction = "allow" | "deny" | "pass" | "log";

/** Which namespaces: exactly one by name, or every namespace whose labels match. */
export type NamespaceMatch = { kind: "name"; name: string } | { kind: "selector"; selector: LabelSelector };

/** Pods matching `pods` in the namespaces `namespaces` (both conditions: AND). */
export interface PodSet {
  namespaces: NamespaceMatch;
  pods: LabelSelector;
}

/**
 * Which NetworkSets / GlobalNetworkSets (labelled CIDR lists): those whose labels match
 * `selector`, either namespaced sets in the namespaces `namespaces` picks, or ("global")
 * the cluster-scoped GlobalNetworkSets.
 */
export interface NetworkSetMatch {
  namespaces: NamespaceMatch | "global";
  selector: LabelSelector;
}

export type Peer =
  /** Any address at all (pods and non-pods). */
  | { kind: "any" }
  | { kind: "pods"; pods: PodSet }
  /** Addresses in `cidr` but not in any of `except` (canonical CIDR text, sorted). Pods included. */
  | { kind: "ipBlock"; cidr: string; except: string[] }
  /** The addresses of the nodes whose labels match (NodeInfo.addresses). */
  | { kind: "nodes"; nodes: LabelSelector }
  /** Every CIDR of the matching network sets. */
  | { kind: "networkSets"; sets: NetworkSetMatch }
  /** Addresses that match every one of `peers` (GlobalNetworkPolicy ANDs selector, namespaceSelector and nets). */
  | { kind: "allOf"; peers: Peer[] };

export type PortSpec =
  /** Every port of one protocol. */
  | { kind: "protocol"; protocol: Protocol }
  /** Ports from..to inclusive (a single port has from === to). */
  | { kind: "range"; protocol: Protocol; from: number; to: number }
  /** A container port name, resolved against the DESTINATION pod's ports of this protocol. */
  | { kind: "named"; protocol: Protocol; name: string }
  /**
   * ICMP (family 4) or ICMPv6 (family 6), optionally one type and code. It only ever
   * matches packets of that family; in `notPorts` it excludes those packets.
   */
  | { kind: "icmp"; family: 4 | 6; type?: number | undefined; code?: number | undefined };

/** The local (selected) pod's side of a rule: its address must match one of `peers` and none of `notPeers`. */
export interface SelfMatch {
  peers: Peer[];
  notPeers: Peer[];
}

export interface RuleIR {
  action: RuleAction;
  /** What explain and log prefixes call the rule: the rule's own name, else `rule <n>` (1-based). */
  label?: string | undefined;
  /** OR of peers (the other end); `[{kind: "any"}]` for "all sources/destinations"; `[]` matches nothing. */
  peers: Peer[];
  /** The other end must match none of these (GlobalNetworkPolicy notNets / not-selectors). */
  notPeers?: Peer[] | undefined;
  /** OR of destination ports; "all" = every protocol and port; `[]` matches nothing. */
  ports: PortSpec[] | "all";
  /** The packet must match none of these destination ports. */
  notPorts?: PortSpec[] | undefined;
  /** OR of source ports (protocol must agree with `ports`); undefined = any. */
  srcPorts?: PortSpec[] | undefined;
  notSrcPorts?: PortSpec[] | undefined;
  /** Restriction on the selected pod's own address (GNP ingress `destination`, egress `source`). */
  self?: SelfMatch | undefined;
}

/** Where a policy came from, for explain, logs and log prefixes. */
export interface PolicyOrigin {
  /** "NetworkPolicy", "ClusterNetworkPolicy", "GlobalNetworkPolicy", or "StandIn" (fail-closed replacement of an unreadable object). */
  kind: string;
  namespace?: string | undefined;
  name: string;
}

export interface PolicyIR {
  /**
   * Unique across all sources, stable (chain names hash it): `<namespace>/<name>` for a
   * NetworkPolicy, `cnp:<name>` for a ClusterNetworkPolicy, `gnp:<name>` for a
   * GlobalNetworkPolicy.
   */
  id: string;
  tier: Tier;
  /**
   * Order inside the tier, lower first: in the admin tier ClusterNetworkPolicies (priority
   * 0..1000) come before GlobalNetworkPolicies, so a GNP's priority is 1_000_000 + order;
   * 0 in the namespace tier. Ties are broken by id (comparePolicies).
   */
  priority: number;
  subject: PodSet;
  ingress: RuleIR[] | undefined;
  egress: RuleIR[] | undefined;
  origin?: PolicyOrigin | undefined;
}

export function rulesOf(p: PolicyIR, d: Direction): RuleIR[] | undefined {
  return d === "ingress" ? p.ingress : p.egress;
}

/** Evaluation order: tier, then priority, then id. */
export function comparePolicies(a: PolicyIR, b: PolicyIR): number {
  const t = TIERS.indexOf(a.tier) - TIERS.indexOf(b.tier);
  if (t !== 0) return t;
  if (a.priority !== b.priority) return a.priority - b.priority;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Canonical text of a namespace match, e.g. `ns:default` or `nssel:team=a`. */
export function namespaceMatchKey(m: NamespaceMatch): string {
  return m.kind === "name" ? `ns:${m.name}` : `nssel:${canonicalSelector(m.selector)}`;
}

/** Canonical text of a pod set: equal text, equal members. */
export function podSetKey(s: PodSet): string {
  return `${namespaceMatchKey(s.namespaces)}|pods:${canonicalSelector(s.pods)}`;
}

export const protocolName = (p: Protocol): string => p.toLowerCase();

/**
 * Whether the rule tests an SCTP port number: what needs iptables' sctp match (named
 * ports go through ipset, `-p sctp` alone through the core). Without that match the
 * renderer and the evaluator approximate such a rule so that it fails closed.
 */
export function usesSctpPorts(rule: RuleIR): boolean {
  const sctpRange = (ps: PortSpec): boolean => ps.kind === "range" && ps.protocol === "SCTP";
  return [rule.ports === "all" ? [] : rule.ports, rule.notPorts ?? [], rule.srcPorts ?? [], rule.notSrcPorts ?? []].some((list) => list.some(sctpRange));
}

/**
 * How an SCTP port test that cannot be made is treated: "wide" as every SCTP packet in a
 * positive test and as no packet in an exclusion (a superset of the rule: for Deny),
 * "narrow" the other way round (a subset: Allow, Log). With the sctp match both are exact.
 */
export type SctpApprox = "wide" | "narrow";
