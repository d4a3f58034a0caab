/**
 * Kubernetes NetworkPolicy (networking.k8s.io/v1) -> policy IR, to the letter of the API
 * documentation:
 *
 * - `podSelector` selects pods of the policy's own namespace (`{}` = all of them);
 * - the directions are `effectivePolicyTypes()` (Ingress always, Egress when there are
 *   egress rules, unless `policyTypes` says otherwise); a direction that applies with no
 *   rules denies everything in it;
 * - a rule's `from`/`to` absent or empty = every source/destination; several peers = OR;
 * - a peer with only `podSelector` = those pods of the policy's namespace; only
 *   `namespaceSelector` = every pod of the matching namespaces; both = those pods of those
 *   namespaces (AND); `ipBlock` = the CIDR minus its `except` entries;
 * - `ports` absent or empty = every port and protocol; protocol defaults to TCP; `port`
 *   absent = every port of the protocol; a number with optional `endPort` = a range; a
 *   name = the destination pod's container port of that name and protocol;
 * - rules, peers and ports are ORed, so exact copies of one are dropped before anything
 *   is translated (networkPolicyWithoutCopies; policyBudget.ts bounds what is left).
 */
import { type NetworkPolicyEgressRule, type NetworkPolicyIngressRule, type NetworkPolicyObject, type NetworkPolicyPeer, type NetworkPolicyPort, effectivePolicyTypes, networkPolicyWithoutCopies } from "../config/k8sSchemas.js";
import { formatCidr, parseCidr } from "../model/ip.js";
import type { Peer, PolicyIR, PortSpec, RuleIR } from "./ir.js";
import { normalizeSelector } from "./selectors.js";

export function networkPolicyId(np: NetworkPolicyObject): string {
  return `${np.metadata.namespace}/${np.metadata.name}`;
}

export function networkPolicyToIr(written: NetworkPolicyObject): PolicyIR {
  // Rules, peers and ports are ORed: exact copies go before anything is translated.
  const np = networkPolicyWithoutCopies(written).object;
  const ns = np.metadata.namespace;
  const types = effectivePolicyTypes(np);
  const ingress = types.ingress ? (np.spec.ingress ?? []).map((r: NetworkPolicyIngressRule) => translateRule(ns, r.from, r.ports)) : undefined;
  const egress = types.egress ? (np.spec.egress ?? []).map((r: NetworkPolicyEgressRule) => translateRule(ns, r.to, r.ports)) : undefined;
  return {
    id: networkPolicyId(np),
    tier: "namespace",
    priority: 0,
    subject: { namespaces: { kind: "name", name: ns }, pods: normalizeSelector(np.spec.podSelector) },
    ingress,
    egress,
    origin: { kind: "NetworkPolicy", namespace: ns, name: np.metadata.name },
  };
}

function translateRule(ns: string, peers: NetworkPolicyPeer[] | undefined, ports: NetworkPolicyPort[] | undefined): RuleIR {
  return {
    action: "allow",
    peers: peers && peers.length > 0 ? peers.map((p) => translatePeer(ns, p)) : [{ kind: "any" }],
    ports: ports && ports.length > 0 ? ports.map(translatePort) : "all",
  };
}


export function translatePeer(ns: string, p: NetworkPolicyPeer): Peer {
  if (p.ipBlock) {
    const except = [...new Set((p.ipBlock.except ?? []).map(canonicalCidr))].sort();
    return { kind: "ipBlock", cidr: canonicalCidr(p.ipBlock.cidr), except };
  }
  const pods = normalizeSelector(p.podSelector);
  if (p.namespaceSelector) return { kind: "pods", pods: { namespaces: { kind: "selector", selector: normalizeSelector(p.namespaceSelector) }, pods } };
  return { kind: "pods", pods: { namespaces: { kind: "name", name: ns }, pods } };
}

export function translatePort(p: NetworkPolicyPort): PortSpec {
  const protocol = p.protocol ?? "TCP";
  if (p.port === undefined) return { kind: "protocol", protocol };
  if (typeof p.port === "string") return { kind: "named", protocol, name: p.port };
  return { kind: "range", protocol, from: p.port, to: p.endPort ?? p.port };
}

/** Network address text with host bits cleared (the API server accepts `10.0.0.1/8`). */
export function canonicalCidr(text: string): string {
  return formatCidr(parseCidr(text));
}
