/**
 * ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) -> policy IR, to the letter of
 * the published API:
 *
 * - `tier: Admin | Baseline` -> the admin or baseline tier; `priority` as given (0..1000,
 *   lower first); two policies of one tier with the same priority are ordered by name
 *   (comparePolicies orders by id `cnp:<name>`; buildPolicyModel warns when such Admin
 *   policies select a common pod);
 * - `subject.namespaces` = every pod of the matching namespaces; `subject.pods` = pods
 *   matching `podSelector` in the namespaces matching `namespaceSelector` (absent or `{}`:
 *   every namespace);
 * - a direction without rules is not affected (`undefined` in the IR); rules keep their
 *   order (rule order is precedence inside the policy); `Accept` -> allow, `Deny` -> deny,
 *   `Pass` -> pass; a rule's label is its `name`, else `rule <n>` (1-based);
 * - peers (OR): `namespaces` = every pod of the matching namespaces; `pods` = as in the
 *   subject; `nodes` = the addresses of the matching nodes; `networks` = one ipBlock per
 *   CIDR (they match pod addresses too); `domainNames` matches nothing, since Sluice has no
 *   DNS-aware dataplane (the published API allows it only in Accept rules, so matching
 *   nothing is its fail-closed reading; buildPolicyModel warns). `namespaces` and `pods`
 *   select pods only, never NetworkSets: network sets are for GlobalNetworkPolicy selectors;
 * - `protocols` absent = every protocol and port; `tcp|udp|sctp.destinationPort.number`
 *   = that port, `.range` = start..end inclusive; `destinationNamedPort` (no protocol) =
 *   the destination pod's container port of that name, whatever its protocol (one named
 *   port spec per protocol).
 */
import type { ClusterNetworkPolicyObject, CnpEgressPeer, CnpIngressPeer, CnpProtocol, NamespacedPod } from "../config/policySchemas.js";
import type { LabelSelector } from "../config/k8sSchemas.js";
import { PROTOCOLS, type Protocol } from "../model/endpoint.js";
import type { Peer, PodSet, PolicyIR, PortSpec, RuleAction, RuleIR } from "./ir.js";
import { canonicalCidr } from "./networkPolicy.js";
import { normalizeSelector } from "./selectors.js";

export const clusterNetworkPolicyId = (name: string): string => `cnp:${name}`;

const ACTIONS: Record<"Accept" | "Deny" | "Pass", RuleAction> = { Accept: "allow", Deny: "deny", Pass: "pass" };
const PROTOCOL_FIELDS: readonly (readonly ["tcp" | "udp" | "sctp", Protocol])[] = [
  ["tcp", "TCP"],
  ["udp", "UDP"],
  ["sctp", "SCTP"],
];

/** The label explain and log prefixes use for a rule: its name, else `rule <n>` (1-based). */
export const ruleLabel = (name: string | undefined, index: number): string => (name !== undefined && name !== "" ? name : `rule ${index + 1}`);

/** Every pod of the namespaces a selector matches. */
export function podsOfNamespaces(namespaces: LabelSelector): PodSet {
  return { namespaces: { kind: "selector", selector: normalizeSelector(namespaces) }, pods: {} };
}

function namespacedPods(p: NamespacedPod): PodSet {
  return { namespaces: { kind: "selector", selector: normalizeSelector(p.namespaceSelector) }, pods: normalizeSelector(p.podSelector) };
}

export function clusterNetworkPolicyToIr(cnp: ClusterNetworkPolicyObject): PolicyIR {
  const s = cnp.spec;
  const rules = <R extends { name?: string | undefined; action: "Accept" | "Deny" | "Pass"; protocols?: CnpProtocol[] | undefined }>(list: R[] | undefined, peersOf: (r: R) => Peer[]): RuleIR[] | undefined =>
    list && list.length > 0 ? list.map((r, i) => ({ action: ACTIONS[r.action], label: ruleLabel(r.name, i), peers: peersOf(r), ports: r.protocols ? r.protocols.flatMap(translateProtocol) : "all" })) : undefined;
  return {
    id: clusterNetworkPolicyId(cnp.metadata.name),
    tier: s.tier === "Admin" ? "admin" : "baseline",
    priority: s.priority,
    subject: s.subject.namespaces ? podsOfNamespaces(s.subject.namespaces) : namespacedPods(s.subject.pods as NamespacedPod),
    ingress: rules(s.ingress, (r) => r.from.flatMap(translatePeer)),
    egress: rules(s.egress, (r) => r.to.flatMap(translatePeer)),
    origin: { kind: "ClusterNetworkPolicy", name: cnp.metadata.name },
  };
}

function translatePeer(p: CnpIngressPeer | CnpEgressPeer): Peer[] {
  if (p.namespaces) return [{ kind: "pods", pods: podsOfNamespaces(p.namespaces) }];
  if (p.pods) return [{ kind: "pods", pods: namespacedPods(p.pods) }];
  if ("nodes" in p && p.nodes) return [{ kind: "nodes", nodes: normalizeSelector(p.nodes) }];
  if ("networks" in p && p.networks) return [...new Set(p.networks.map(canonicalCidr))].map((cidr) => ({ kind: "ipBlock", cidr, except: [] }));
  return []; // domainNames: matches nothing here
}

function translateProtocol(p: CnpProtocol): PortSpec[] {
  if (p.destinationNamedPort !== undefined) {
    const name = p.destinationNamedPort;
    return PROTOCOLS.map((protocol) => ({ kind: "named", protocol, name }));
  }
  for (const [field, protocol] of PROTOCOL_FIELDS) {
    const port = p[field]?.destinationPort;
    if (!port) continue;
    if (port.range) return [{ kind: "range", protocol, from: port.range.start, to: port.range.end }];
    return [{ kind: "range", protocol, from: port.number as number, to: port.number as number }];
  }
  return [];
}

/** What the policy asks for that Sluice cannot do, one operator-facing line each. */
export function clusterNetworkPolicyNotes(cnp: ClusterNetworkPolicyObject): string[] {
  const out: string[] = [];
  (cnp.spec.egress ?? []).forEach((r, i) => {
    if (r.to.some((p) => p.domainNames !== undefined)) out.push(`ClusterNetworkPolicy ${cnp.metadata.name} egress ${ruleLabel(r.name, i)}: domainNames peers are not supported by Sluice and match nothing (the rule accepts nothing through them)`);
  });
  return out;
}
