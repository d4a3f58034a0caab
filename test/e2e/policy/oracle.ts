/**
 * A second opinion on the hand-written grids: a deliberately small, independent reading
 * of the specs, written for the test and sharing no code with the policy engine. It is
 * never used to produce the expectations the system is compared with;
 * expectations.test.ts only checks that it agrees with the grids.
 *
 * What it reads, per direction (egress of the source pod, then ingress of the
 * destination pod; an end that is no pod has no policy; a pod reaches itself by its own
 * address without leaving it):
 * - a pod's own node always reaches the pod (the host's own traffic, kubelet probes);
 * - Admin tier: ClusterNetworkPolicies of tier Admin by (priority, name), then
 *   GlobalNetworkPolicies (sluice.dev/v1, Calico's fields with label selectors) by
 *   (order, unordered last, name); rules in order: Accept/Allow and Deny decide, Pass
 *   leaves the tier, Log goes on; nothing matched: on to the next tier;
 * - NetworkPolicy (networking.k8s.io/v1): a pod any of them selects in the direction is
 *   isolated and allowed only what one of their rules allows; but NetworkPolicy does not
 *   judge a pod's traffic to its own node, nor a pod reaching itself through a Service (the
 *   Kubernetes docs' exceptions; the ClusterNetworkPolicy API has none): those skip it;
 * - Baseline tier (ClusterNetworkPolicy tier Baseline), only for traffic NetworkPolicy left
 *   alone; Pass goes to the default;
 * - default: allow.
 */
import type { Protocol } from "../../helpers/policyMatrix.js";
import { nodeLabels } from "./model.js";
import type { ClusterState, ObjectKind, PodState, PolicyDoc } from "./state.js";

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

// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2)
interface CnpPeer {
  namespaces?: Selector;
  pods?: { namespaceSelector?: Selector; podSelector: Selector };
  nodes?: Selector;
  networks?: string[];
}
interface CnpPortMatch {
  destinationPort: { number?: number; range?: { start: number; end: number } };
}
interface CnpProtocol {
  tcp?: CnpPortMatch;
  udp?: CnpPortMatch;
  sctp?: CnpPortMatch;
  destinationNamedPort?: string;
}
interface CnpRule {
  action: "Accept" | "Deny" | "Pass";
  from?: CnpPeer[];
  to?: CnpPeer[];
  protocols?: CnpProtocol[];
}
interface CnpSpec {
  tier: "Admin" | "Baseline";
  priority: number;
  subject: { namespaces?: Selector; pods?: { namespaceSelector?: Selector; podSelector: Selector } };
  ingress?: CnpRule[];
  egress?: CnpRule[];
}

// GlobalNetworkPolicy (sluice.dev/v1)
interface Entity {
  nets?: string[];
  notNets?: string[];
  selector?: Selector;
  namespaceSelector?: Selector;
  ports?: Array<number | string>;
  notPorts?: Array<number | string>;
}
interface GnpRule {
  action: "Allow" | "Deny" | "Pass" | "Log";
  protocol?: string;
  icmp?: { type?: number; code?: number };
  source?: Entity;
  destination?: Entity;
}
interface GnpSpec {
  order?: number;
  selector?: Selector;
  namespaceSelector?: Selector;
  types?: string[];
  ingress?: GnpRule[];
  egress?: GnpRule[];
}

/** One end of a connection: a pod, or an address outside the pod network. */
interface End {
  ip: string;
  pod?: PodState | undefined;
}

/** The packet: its ends and what it is. */
interface Packet {
  src: End;
  dst: End;
  port: number;
  protocol: Protocol;
}

type Decision = "allow" | "deny" | undefined;

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
  if (cidr.includes(":")) return false; // an IPv6 block holds no IPv4 address (every probe is IPv4)
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

  private docs<T>(kind: ObjectKind): Array<{ doc: PolicyDoc; spec: T }> {
    return [...this.state.policies.values()].filter((d) => d.kind === kind).map((doc) => ({ doc, spec: doc.spec as unknown as T }));
  }

  // ---- NetworkPolicy ----

  private peerMatches(policyNs: string, peer: Peer, end: End): boolean {
    if (peer.ipBlock) return inCidr(end.ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((e) => inCidr(end.ip, e));
    const pod = end.pod;
    if (!pod) return false;
    const nsOk = peer.namespaceSelector ? selectorMatches(peer.namespaceSelector, this.nsLabels(pod.namespace)) : pod.namespace === policyNs;
    const podOk = peer.podSelector ? selectorMatches(peer.podSelector, pod.labels) : true;
    return nsOk && podOk;
  }

  private portMatches(e: PortEntry, pkt: Packet): boolean {
    if ((e.protocol ?? "TCP") !== pkt.protocol) return false;
    if (e.port === undefined) return true;
    if (typeof e.port === "number") return e.endPort !== undefined ? pkt.port >= e.port && pkt.port <= e.endPort : pkt.port === e.port;
    return namedPort(pkt, e.port);
  }

  private ruleMatches(policyNs: string, rule: Rule, peers: Peer[] | undefined, peer: End, pkt: Packet): boolean {
    const peerOk = !peers || peers.length === 0 || peers.some((p) => this.peerMatches(policyNs, p, peer));
    const portOk = !rule.ports || rule.ports.length === 0 || rule.ports.some((e) => this.portMatches(e, pkt));
    return peerOk && portOk;
  }

  private policiesFor(pod: PodState, dir: "ingress" | "egress"): Array<{ ns: string; spec: Spec }> {
    return this.docs<Spec>("NetworkPolicy")
      .filter((p) => p.doc.metadata.namespace === pod.namespace)
      .map((p) => ({ ns: pod.namespace, spec: p.spec }))
      .filter((p) => directions(p.spec)[dir] && selectorMatches(p.spec.podSelector, pod.labels));
  }

  // ---- ClusterNetworkPolicy ----

  private cnpSubject(s: CnpSpec, pod: PodState): boolean {
    if (s.subject.namespaces) return selectorMatches(s.subject.namespaces, this.nsLabels(pod.namespace));
    const p = s.subject.pods;
    return p !== undefined && selectorMatches(p.namespaceSelector ?? {}, this.nsLabels(pod.namespace)) && selectorMatches(p.podSelector, pod.labels);
  }

  private cnpPeer(peer: CnpPeer, end: End): boolean {
    if (peer.namespaces) return end.pod !== undefined && selectorMatches(peer.namespaces, this.nsLabels(end.pod.namespace));
    if (peer.pods) return end.pod !== undefined && selectorMatches(peer.pods.namespaceSelector ?? {}, this.nsLabels(end.pod.namespace)) && selectorMatches(peer.pods.podSelector, end.pod.labels);
    if (peer.nodes) {
      const sel = peer.nodes;
      return Object.entries(this.state.addresses.hosts).some(([name, ip]) => name.startsWith("node-") && ip === end.ip && selectorMatches(sel, nodeLabels(name)));
    }
    return (peer.networks ?? []).some((c) => inCidr(end.ip, c));
  }

  private cnpProtocol(p: CnpProtocol, pkt: Packet): boolean {
    if (p.destinationNamedPort !== undefined) return namedPort(pkt, p.destinationNamedPort);
    const m = pkt.protocol === "TCP" ? p.tcp : pkt.protocol === "UDP" ? p.udp : undefined; // SCTP: no such packets here
    if (!m) return false;
    const d = m.destinationPort;
    return d.range ? pkt.port >= d.range.start && pkt.port <= d.range.end : pkt.port === d.number;
  }

  private cnpRules(s: CnpSpec, dir: "ingress" | "egress", pkt: Packet): Array<{ action: string; matches: boolean }> {
    const peerEnd = dir === "ingress" ? pkt.src : pkt.dst;
    return (s[dir] ?? []).map((r) => ({
      action: r.action,
      matches: ((dir === "ingress" ? r.from : r.to) ?? []).some((p) => this.cnpPeer(p, peerEnd)) && (r.protocols === undefined || r.protocols.some((p) => this.cnpProtocol(p, pkt))),
    }));
  }

  // ---- GlobalNetworkPolicy ----

  private gnpSubject(s: GnpSpec, pod: PodState): boolean {
    return selectorMatches(s.selector ?? {}, pod.labels) && selectorMatches(s.namespaceSelector ?? {}, this.nsLabels(pod.namespace));
  }

  private gnpTypes(s: GnpSpec): { ingress: boolean; egress: boolean } {
    if (s.types) return { ingress: s.types.includes("Ingress"), egress: s.types.includes("Egress") };
    const i = (s.ingress ?? []).length > 0;
    const e = (s.egress ?? []).length > 0;
    return { ingress: i || !e, egress: e };
  }

  /** An entity's addresses: nets, notNets, and selector / namespaceSelector over pods and network sets. */
  private entityMatches(e: Entity | undefined, end: End): boolean {
    if (!e) return true;
    if (e.nets && !e.nets.some((c) => inCidr(end.ip, c))) return false;
    if (e.notNets?.some((c) => inCidr(end.ip, c))) return false;
    if (e.selector === undefined && e.namespaceSelector === undefined) return true;
    const sel = e.selector ?? {};
    const pod = end.pod;
    if (pod && selectorMatches(sel, pod.labels) && selectorMatches(e.namespaceSelector ?? {}, this.nsLabels(pod.namespace))) return true;
    const sets =
      e.namespaceSelector !== undefined
        ? this.docs<{ nets: string[] }>("NetworkSet").filter((d) => selectorMatches(e.namespaceSelector as Selector, this.nsLabels(d.doc.metadata.namespace ?? "")))
        : this.docs<{ nets: string[] }>("GlobalNetworkSet");
    return sets.some((d) => selectorMatches(sel, d.doc.metadata.labels ?? {}) && d.spec.nets.some((c) => inCidr(end.ip, c)));
  }

  private gnpPort(p: number | string, pkt: Packet): boolean {
    if (typeof p === "number") return pkt.port === p;
    const range = /^(\d+):(\d+)$/.exec(p);
    if (range) return pkt.port >= Number(range[1]) && pkt.port <= Number(range[2]);
    return namedPort(pkt, p);
  }

  private gnpRuleMatches(r: GnpRule, pkt: Packet): boolean {
    if (r.protocol !== undefined) {
      if (r.protocol === "ICMP") {
        if (pkt.protocol !== "ICMP" || (r.icmp?.type !== undefined && r.icmp.type !== 8) || (r.icmp?.code !== undefined && r.icmp.code !== 0)) return false;
      } else if (r.protocol !== pkt.protocol) return false; // ICMPv6 and SCTP: no such packets here
    }
    if (!this.entityMatches(r.source, pkt.src) || !this.entityMatches(r.destination, pkt.dst)) return false;
    const ports = r.destination?.ports;
    if (ports && ports.length > 0 && !ports.some((p) => this.gnpPort(p, pkt))) return false;
    if (r.destination?.notPorts?.some((p) => this.gnpPort(p, pkt))) return false;
    if (r.source?.ports && r.source.ports.length > 0) return false; // the probes' source ports are not known
    return true;
  }

  // ---- tiers ----

  /** A tier's decision for `self` in `dir`: the first Accept/Allow or Deny that matches; undefined when none does or a Pass comes first. */
  private tier(tier: "Admin" | "Baseline", dir: "ingress" | "egress", self: PodState, pkt: Packet): Decision {
    const byName = (a: PolicyDoc, b: PolicyDoc): number => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0);
    const cnps = this.docs<CnpSpec>("ClusterNetworkPolicy")
      .filter((p) => p.spec.tier === tier)
      .sort((a, b) => a.spec.priority - b.spec.priority || byName(a.doc, b.doc));
    const policies: Array<Array<{ action: string; matches: boolean }>> = cnps.filter((p) => this.cnpSubject(p.spec, self)).map((p) => this.cnpRules(p.spec, dir, pkt));
    if (tier === "Admin") {
      const order = (s: GnpSpec): number => s.order ?? Number.POSITIVE_INFINITY;
      const gnps = this.docs<GnpSpec>("GlobalNetworkPolicy").sort((a, b) => order(a.spec) - order(b.spec) || byName(a.doc, b.doc));
      for (const g of gnps) if (this.gnpSubject(g.spec, self) && this.gnpTypes(g.spec)[dir]) policies.push((g.spec[dir] ?? []).map((r) => ({ action: r.action, matches: this.gnpRuleMatches(r, pkt) })));
    }
    for (const rules of policies) {
      for (const r of rules) {
        if (!r.matches || r.action === "Log") continue;
        if (r.action === "Pass") return undefined;
        return r.action === "Deny" ? "deny" : "allow";
      }
    }
    return undefined;
  }

  private direction(dir: "ingress" | "egress", self: End, peer: End, pkt: Packet): boolean {
    const pod = self.pod;
    if (!pod) return true;
    const ownNode = peer.ip === this.state.addresses.hosts[pod.node];
    if (dir === "ingress" && ownNode) return true;
    const admin = this.tier("Admin", dir, pod, pkt);
    if (admin) return admin === "allow";
    const toItself = peer.pod !== undefined && peer.pod.key === pod.key;
    const nps = ownNode || toItself ? [] : this.policiesFor(pod, dir);
    if (nps.length > 0) return nps.some((p) => (p.spec[dir] ?? []).some((r) => this.ruleMatches(p.ns, r, dir === "ingress" ? r.from : r.to, peer, pkt)));
    return this.tier("Baseline", dir, pod, pkt) !== "deny";
  }

  private allowedEnds(src: End, dst: End, port: number, protocol: Protocol, hairpin = false): boolean {
    if (src.pod && dst.pod && src.pod.key === dst.pod.key && !hairpin) return true;
    const pkt: Packet = { src, dst, port, protocol };
    return this.direction("egress", src, dst, pkt) && this.direction("ingress", dst, src, pkt);
  }

  private podEnd(key: string): End {
    const pod = this.state.pod(key);
    return { ip: pod.ip, pod };
  }

  allowed(fromKey: string, toKey: string, port: number, protocol: Protocol): boolean {
    return this.allowedEnds(this.podEnd(fromKey), this.podEnd(toKey), port, protocol);
  }

  /** From a pod back to itself through a Service IP that the service proxy sends to the same pod. */
  allowedHairpin(key: string, port: number, protocol: Protocol): boolean {
    return this.allowedEnds(this.podEnd(key), this.podEnd(key), port, protocol, true);
  }

  /** From a pod to a host outside the pod network (a node, the external host). */
  allowedToHost(fromKey: string, host: string, port: number, protocol: Protocol): boolean {
    return this.allowedEnds(this.podEnd(fromKey), this.hostEnd(host), port, protocol);
  }

  /** From a host outside the pod network to a pod. */
  allowedFromHost(host: string, toKey: string, port: number, protocol: Protocol): boolean {
    return this.allowedEnds(this.hostEnd(host), this.podEnd(toKey), port, protocol);
  }

  private hostEnd(host: string): End {
    const ip = this.state.addresses.hosts[host];
    if (ip === undefined) throw new Error(`oracle: no host ${host}`);
    return { ip };
  }
}

/** A named port of the packet's destination pod, of the packet's protocol and port. */
function namedPort(pkt: Packet, name: string): boolean {
  return pkt.dst.pod !== undefined && pkt.dst.pod.ports.some((cp) => cp.name === name && cp.protocol === pkt.protocol && cp.containerPort === pkt.port);
}
