/**
 * A second opinion on the hand-written grids: a deliberately small, independent reading
 * of the NetworkPolicy spec (networking.k8s.io/v1), written for the test and sharing no
 * code with the policy engine. It is never used to produce the expectations the system
 * is compared with; expectations.test.ts only checks that it agrees with the grids.
 */
import type { Protocol } from "../../helpers/policyMatrix.js";
import type { ClusterState, PodState, PolicyDoc } from "./state.js";

interface Requirement {
  key: string;
  operator: string;
  values?: string[];
}
interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Requirement[];
}
interface Peer {
  podSelector?: Selector;
  namespaceSelector?: Selector;
  ipBlock?: { cidr: string; except?: string[] };
}
interface PortEntry {
  protocol?: string;
  port?: number | string;
  endPort?: number;
}
interface Rule {
  from?: Peer[];
  to?: Peer[];
  ports?: PortEntry[];
}
interface Spec {
  podSelector: Selector;
  policyTypes?: string[];
  ingress?: Rule[];
  egress?: Rule[];
}

export function selectorMatches(sel: Selector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const r of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    const vals = r.values ?? [];
    switch (r.operator) {
      case "In":
        if (!has || !vals.includes(labels[r.key] as string)) return false;
        break;
      case "NotIn":
        if (has && vals.includes(labels[r.key] as string)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        throw new Error(`oracle: unknown operator ${r.operator}`);
    }
  }
  return true;
}

function ipv4(s: string): number {
  const parts = s.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`oracle: not an IPv4 address: ${s}`);
  return (((parts[0] as number) << 24) | ((parts[1] as number) << 16) | ((parts[2] as number) << 8) | (parts[3] as number)) >>> 0;
}

export function inCidr(ip: string, cidr: string): boolean {
  const [base, len] = cidr.split("/");
  const n = Number(len);
  const mask = n === 0 ? 0 : (0xffffffff << (32 - n)) >>> 0;
  return ((ipv4(ip) & mask) >>> 0) === ((ipv4(base as string) & mask) >>> 0);
}

function directions(spec: Spec): { ingress: boolean; egress: boolean } {
  if (spec.policyTypes && spec.policyTypes.length > 0) return { ingress: spec.policyTypes.includes("Ingress"), egress: spec.policyTypes.includes("Egress") };
  return { ingress: true, egress: (spec.egress ?? []).length > 0 };
}

export class Oracle {
  constructor(private readonly state: ClusterState) {}

  private nsLabels(ns: string): Record<string, string> {
    return this.state.namespaces.get(ns)?.labels ?? {};
  }

  private peerMatches(policyNs: string, peer: Peer, pod: PodState): boolean {
    if (peer.ipBlock) return inCidr(pod.ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((e) => inCidr(pod.ip, e));
    const nsOk = peer.namespaceSelector ? selectorMatches(peer.namespaceSelector, this.nsLabels(pod.namespace)) : pod.namespace === policyNs;
    const podOk = peer.podSelector ? selectorMatches(peer.podSelector, pod.labels) : true;
    return nsOk && podOk;
  }

  private portMatches(e: PortEntry, dst: PodState, port: number, protocol: Protocol): boolean {
    if ((e.protocol ?? "TCP") !== protocol) return false;
    if (e.port === undefined) return true;
    if (typeof e.port === "number") return e.endPort !== undefined ? port >= e.port && port <= e.endPort : port === e.port;
    return dst.ports.some((cp) => cp.name === e.port && cp.protocol === protocol && cp.containerPort === port);
  }

  private ruleMatches(policyNs: string, rule: Rule, peers: Peer[] | undefined, peer: PodState, dst: PodState, port: number, protocol: Protocol): boolean {
    const peerOk = !peers || peers.length === 0 || peers.some((p) => this.peerMatches(policyNs, p, peer));
    const portOk = !rule.ports || rule.ports.length === 0 || rule.ports.some((e) => this.portMatches(e, dst, port, protocol));
    return peerOk && portOk;
  }

  private policiesFor(pod: PodState, dir: "ingress" | "egress"): Array<{ ns: string; spec: Spec }> {
    return [...this.state.policies.values()]
      .filter((p: PolicyDoc) => p.metadata.namespace === pod.namespace)
      .map((p) => ({ ns: p.metadata.namespace, spec: p.spec as unknown as Spec }))
      .filter((p) => directions(p.spec)[dir] && selectorMatches(p.spec.podSelector, pod.labels));
  }

  allowed(fromKey: string, toKey: string, port: number, protocol: Protocol): boolean {
    if (fromKey === toKey) return true;
    const src = this.state.pod(fromKey);
    const dst = this.state.pod(toKey);
    const eg = this.policiesFor(src, "egress");
    if (eg.length > 0 && !eg.some((p) => (p.spec.egress ?? []).some((r) => this.ruleMatches(p.ns, r, r.to, dst, dst, port, protocol)))) return false;
    const ing = this.policiesFor(dst, "ingress");
    if (ing.length > 0 && !ing.some((p) => (p.spec.ingress ?? []).some((r) => this.ruleMatches(p.ns, r, r.from, src, dst, port, protocol)))) return false;
    return true;
  }
}
