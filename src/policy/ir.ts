/**
 * The policy IR: what every policy source (Kubernetes NetworkPolicy now; the Admin and
 * Baseline tiers of ClusterNetworkPolicy and Sluice's GlobalNetworkPolicy later) is
 * translated into before rendering. The renderer only knows this shape.
 *
 * - A policy belongs to a tier and has a priority inside it; evaluation runs tier by tier
 *   (admin, namespace, baseline), policies in (priority, id) order.
 * - `subject` is the set of pods it applies to: pods matching a pod selector in the
 *   namespaces named or selected.
 * - `ingress`/`egress` hold its rules per direction; `undefined` means the policy does not
 *   apply in that direction. In the namespace tier, applying in a direction isolates the
 *   selected pods in that direction (even with zero rules: deny all).
 * - A rule matches when ANY of its peers and ANY of its ports match; its action decides
 *   (allow now; deny and pass for the admin/baseline tiers).
 */
import type { Protocol } from "../model/endpoint.js";
import type { LabelSelector } from "../config/k8sSchemas.js";
import { canonicalSelector } from "./selectors.js";

export type Tier = "admin" | "namespace" | "baseline";
export const TIERS: readonly Tier[] = ["admin", "namespace", "baseline"];

export type Direction = "ingress" | "egress";
export const DIRECTIONS: readonly Direction[] = ["ingress", "egress"];

/** allow: accept (ends evaluation); deny: drop; pass: skip the rest of the admin tier. */
export type RuleAction = "allow" | "deny" | "pass";

/** Which namespaces: exactly one by name, or every namespace whose labels match. */
export type NamespaceMatch = { kind: "name"; name: string } | { kind: "selector"; selector: LabelSelector };

/** Pods matching `pods` in the namespaces `namespaces` (both conditions: AND). */
export interface PodSet {
  namespaces: NamespaceMatch;
  pods: LabelSelector;
}

export type Peer =
  /** Any address at all (pods and non-pods). */
  | { kind: "any" }
  | { kind: "pods"; pods: PodSet }
  /** Addresses in `cidr` but not in any of `except` (canonical CIDR text, sorted). Pods included. */
  | { kind: "ipBlock"; cidr: string; except: string[] };

export type PortSpec =
  /** Every port of one protocol. */
  | { kind: "protocol"; protocol: Protocol }
  /** Ports from..to inclusive (a single port has from === to). */
  | { kind: "range"; protocol: Protocol; from: number; to: number }
  /** A container port name, resolved against the DESTINATION pod's ports of this protocol. */
  | { kind: "named"; protocol: Protocol; name: string };

export interface RuleIR {
  action: RuleAction;
  /** OR of peers; `[{kind: "any"}]` for "all sources/destinations"; `[]` matches nothing. */
  peers: Peer[];
  /** OR of ports; "all" = every protocol and port; `[]` matches nothing. */
  ports: PortSpec[] | "all";
}

export interface PolicyIR {
  /** Unique across all sources: `<namespace>/<name>` for a NetworkPolicy. */
  id: string;
  tier: Tier;
  /** Order inside the tier, lower first (admin priority, GNP order); 0 in the namespace tier. */
  priority: number;
  subject: PodSet;
  ingress: RuleIR[] | undefined;
  egress: RuleIR[] | undefined;
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
