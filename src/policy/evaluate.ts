/**
 * The reference meaning of the policy IR, independent of how the renderer encodes it: is
 * this one connection allowed, and by which steps? Used by the tests to check the rendered
 * chains, by `sluicectl explain` to explain a decision, and to predict the reachability
 * matrix of a sandbox.
 *
 * Per direction, for the pod at that end (egress of the source pod, ingress of the
 * destination pod; both must allow, a non-pod end has no policy):
 *
 * 0. a pod's own node reaching it is always allowed (the host's own traffic to its pods;
 *    kubelet probes); a pod whose Pod or Namespace object is unknown is isolated (denied) in
 *    both directions, its own node and itself included. NetworkPolicy does not judge a pod's
 *    egress to its own node, nor a pod reaching itself through a Service (a hairpin: the
 *    Kubernetes docs' exceptions), so these skip step 2; the ClusterNetworkPolicy API has no
 *    such exception, so steps 1 and 3 judge them like any other traffic. A pod reaching
 *    itself by its own address never leaves it: allowed, no policy sees it;
 * 1. Admin tier (ClusterNetworkPolicy tier Admin by priority, then GlobalNetworkPolicy by
 *    order: the IR's (priority, id) order): the policies that select the pod and apply in
 *    the direction, rules in order; the first matching rule with allow or deny decides;
 *    pass skips the rest of the tier; log records the packet and evaluation goes on;
 * 2. Namespace tier (NetworkPolicy): a pod selected by any of its policies in the direction
 *    is isolated: allowed when a rule of one of them allows, else denied. Only allow (and
 *    log) rules mean anything here; deny and pass rules are ignored (NetworkPolicy has none);
 * 3. Baseline tier (ClusterNetworkPolicy tier Baseline), only when step 2 did not isolate the
 *    pod (or was skipped): as the admin tier, a pass skips to the default;
 * 4. default: allow.
 *
 * A rule matches when any of its peers and none of its notPeers match the other end, the
 * pod's own address matches its `self` restriction, and the packet matches any of its ports
 * and none of its notPorts, any of its srcPorts (a rule with srcPorts needs the connection's
 * source port) and none of its notSrcPorts. ICMP specs match only ICMP of their family
 * (ICMPv6 for IPv6 connections); a named port is a container port of the pod at that end
 * (destination ports: the destination pod; source ports: the source pod), never a non-pod;
 * without iptables' sctp match an SCTP port number cannot be tested, and a rule that tests
 * one fails closed as the renderer renders it: a Deny matches every SCTP packet it might,
 * an Allow or Log none, a Pass drops those packets (SctpApprox, usesSctpPorts).
 */
import type { PodEndpoint, Protocol } from "../model/endpoint.js";
import { type Cidr, type Family, type IpAddr, cidrContainsIp, formatIp, parseCidr, parseIp } from "../model/ip.js";
import { ClusterAddresses } from "./clusterAddresses.js";
import { EndpointIndex } from "./endpointIndex.js";
import type { NetworkSetInfo, NodeInfo, PolicyModel } from "./model.js";
import { type Direction, type Peer, type PodSet, type PolicyIR, type PortSpec, type RuleIR, type SctpApprox, type Tier, comparePolicies, podSetKey, rulesOf, usesSctpPorts } from "./ir.js";
import { canonicalSelector } from "./selectors.js";

/** ICMP means ICMP for IPv4 addresses and ICMPv6 for IPv6 ones. */
export type ConnectionProtocol = Protocol | "ICMP";

export interface Connection {
  /** Source and destination addresses (pods are recognised by address). */
  src: string;
  dst: string;
  protocol: ConnectionProtocol;
  /** Destination port (0 for ICMP). */
  port: number;
  /** Source port, when known (rules with source ports match only when it is given). */
  srcPort?: number | undefined;
  /** ICMP type and code; default an echo request (8, or 128 for ICMPv6), code 0. */
  icmpType?: number | undefined;
  icmpCode?: number | undefined;
  /**
   * src and dst are the same pod and the packet went through the host: a Service that the
   * service proxy load-balanced back to the source pod. Without it a pod connecting to
   * itself never leaves its network namespace, and no policy sees that.
   */
  hairpin?: boolean | undefined;
}

/**
 * One step of the path that decided a direction, for `sluicectl explain`: a rule that
 * matched (with its action), or the end of a tier / the default. `text` is one line such
 * as `[Admin] tenant-isolation rule 2: Deny` or `[NetworkPolicy] isolated by x/default-deny; no rule allows: Deny`.
 */
export interface ExplainStep {
  tier: Tier | "default";
  /** The policy's display name (origin), when a policy took the step. */
  policy?: string | undefined;
  rule?: string | undefined;
  action: "allow" | "deny" | "pass" | "log";
  text: string;
  /** The policy's id (PolicyIR.id) and the rule's index in its direction (0-based), when a rule took the step. */
  policyId?: string | undefined;
  ruleIndex?: number | undefined;
  /** Why a step that no rule took was taken (tier "default"). */
  reason?: "own-node" | "self" | "metadata-unknown" | "isolated" | "not-isolated" | undefined;
}

export interface EvaluateOptions {
  /** False: iptables cannot test SCTP port numbers; rules that do are approximated to fail closed, as the renderer does. */
  sctpSupported: boolean;
}

/** What the evaluator knows besides pods and policies. */
export interface EvaluatorContext {
  /** For `nodes` peers and for "a pod and its own node" (NodeInfo.name = PodEndpoint.node). */
  nodes?: readonly NodeInfo[] | undefined;
  /** For `networkSets` peers. */
  networkSets?: readonly NetworkSetInfo[] | undefined;
  /** Pods whose Pod or Namespace object is unknown (left out of the index): isolated both ways. */
  unknownEndpoints?: readonly PodEndpoint[] | undefined;
}

export interface DirectionVerdict {
  /** NetworkPolicies that select the pod in this direction (empty: not isolated). */
  isolatedBy: string[];
  /** The policy whose rule allowed it (any tier), if a rule did. */
  allowedBy: string | undefined;
  allowed: boolean;
  /** The steps taken, in order; the last one decided (empty for a non-pod end: no policy). */
  path: ExplainStep[];
}

export interface Verdict {
  allowed: boolean;
  egress: DirectionVerdict;
  ingress: DirectionVerdict;
}

/** A connection without its ends, for a matrix. */
export type Probe = Omit<Connection, "src" | "dst">;

export interface VerdictMatrix {
  /** `<namespace>/<pod>`, rows (from) and columns (to) in this order. */
  pods: string[];
  /** cells[from][to]; undefined where a pod has no address of the family. */
  cells: (Verdict | undefined)[][];
}

const TIER_LABEL: Record<Tier | "default", string> = { admin: "Admin", namespace: "NetworkPolicy", baseline: "Baseline", default: "Default" };
const ACTION_LABEL: Record<ExplainStep["action"], string> = { allow: "Allow", deny: "Deny", pass: "Pass", log: "Log" };

/** What explain and log prefixes call a policy: NetworkPolicies (and namespaced objects) `ns/name`, cluster objects by name. */
export function policyDisplayName(p: PolicyIR): string {
  const o = p.origin;
  if (!o) return p.id;
  return o.namespace !== undefined ? `${o.namespace}/${o.name}` : o.name;
}

/** A rule's label: its own name, else `rule <n>` (1-based). */
export const ruleLabel = (r: RuleIR, index: number): string => r.label ?? `rule ${index + 1}`;

/** The first ICMP echo request of a family (the default of Connection.icmpType). */
export const echoRequest = (family: Family): number => (family === 4 ? 8 : 128);

export class PolicyEvaluator {
  private readonly byAddr = new Map<string, PodEndpoint>();
  private readonly canonical = new Map<string, string>();
  private readonly unknown = new Set<PodEndpoint>();
  private readonly tiers: Record<Tier, PolicyIR[]> = { admin: [], namespace: [], baseline: [] };
  private readonly addrs: ClusterAddresses;
  private readonly cidrs = new Map<string, Cidr>();
  private readonly ips = new Map<string, IpAddr>();
  private readonly nodeAddrs = new Map<string, Set<string>>();
  private readonly members = new Map<string, Set<PodEndpoint>>();
  private readonly nodeSelected = new Map<string, Set<string>>();

  constructor(
    policies: readonly PolicyIR[],
    private readonly index: EndpointIndex,
    private readonly opts: EvaluateOptions,
    ctx: EvaluatorContext = {},
  ) {
    for (const p of [...policies].sort(comparePolicies)) this.tiers[p.tier].push(p);
    for (const ep of ctx.unknownEndpoints ?? []) this.unknown.add(ep);
    for (const ep of index.allPods()) if (ep.metadataKnown === false) this.unknown.add(ep);
    for (const ep of [...index.allPods(), ...this.unknown]) for (const f of [4, 6] as const) for (const a of index.addresses(ep, f)) this.byAddr.set(a, ep);
    this.addrs = new ClusterAddresses(ctx.nodes ?? [], ctx.networkSets ?? [], index);
  }

  /**
   * The evaluator of a whole policy model (what explain uses). Endpoints with unknown
   * metadata match no selector and are isolated both ways, as in the renderer.
   */
  static fromModel(model: PolicyModel, opts: EvaluateOptions): PolicyEvaluator {
    const known = model.endpoints.filter((ep) => ep.metadataKnown !== false);
    const unknownEndpoints = model.endpoints.filter((ep) => ep.metadataKnown === false);
    return new PolicyEvaluator(model.policies, new EndpointIndex(known, model.namespaces), opts, { nodes: model.nodes, networkSets: model.networkSets, unknownEndpoints });
  }

  /** The pod at an address (including pods of unknown metadata). */
  podAt(addr: string): PodEndpoint | undefined {
    return this.byAddr.get(this.canon(addr));
  }

  evaluate(c: Connection): Verdict {
    const srcPod = this.podAt(c.src);
    const dstPod = this.podAt(c.dst);
    // By its own address a pod reaches itself inside its network namespace: no policy sees that.
    if (srcPod !== undefined && srcPod === dstPod && c.hairpin !== true) {
      const self = (): DirectionVerdict => decided(true, [], undefined, { tier: "default", action: "allow", reason: "self", text: "[Self] to itself: Allow" });
      return { allowed: true, egress: self(), ingress: self() };
    }
    const egress = srcPod ? this.side("egress", srcPod, c, srcPod, dstPod) : open();
    const ingress = dstPod ? this.side("ingress", dstPod, c, srcPod, dstPod) : open();
    return { allowed: egress.allowed && ingress.allowed, egress, ingress };
  }

  /**
   * Every pod to every pod (rows from, columns to), each pod at its first address of
   * `family` (default 4); `pods` defaults to every pod, sorted by namespace/name.
   */
  matrix(probe: Probe, options: { family?: Family | undefined; pods?: readonly PodEndpoint[] | undefined } = {}): VerdictMatrix {
    const family = options.family ?? 4;
    const pods = options.pods ?? [...this.index.allPods(), ...this.unknown].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    const addr = pods.map((p) => this.index.addresses(p, family)[0]);
    return {
      pods: pods.map(key),
      cells: addr.map((src) => addr.map((dst) => (src !== undefined && dst !== undefined ? this.evaluate({ ...probe, src, dst }) : undefined))),
    };
  }

  /** One direction for the pod `self` at that end; `srcPod`/`dstPod` are the connection's ends. */
  private side(d: Direction, self: PodEndpoint, c: Connection, srcPod: PodEndpoint | undefined, dstPod: PodEndpoint | undefined): DirectionVerdict {
    const peerAddr = d === "ingress" ? c.src : c.dst;
    const ownNode = this.ownNode(self).has(this.canon(peerAddr));
    if (d === "ingress" && ownNode) return decided(true, [], undefined, { tier: "default", action: "allow", reason: "own-node", text: "[Node] own node: Allow" });
    if (this.unknown.has(self)) return decided(false, [], undefined, { tier: "default", action: "deny", reason: "metadata-unknown", text: "[Sluice] pod or namespace unknown, isolated: Deny" });

    // Named ports and peers only ever see pods whose labels are known.
    const m = new RuleMatcher(this, d, c, known(this.unknown, srcPod), known(this.unknown, dstPod));
    const path: ExplainStep[] = [];
    // What NetworkPolicy does not judge: the pod to its own node, the pod to itself (here only a hairpin: evaluate answers the rest).
    const exempt: ExplainStep | undefined =
      srcPod === dstPod
        ? { tier: "default", action: "allow", reason: "self", text: "[Self] to itself through a Service, not subject to NetworkPolicy: Allow" }
        : ownNode
          ? { tier: "default", action: "allow", reason: "own-node", text: "[Node] own node, not subject to NetworkPolicy: Allow" }
          : undefined;
    const isolating = exempt ? [] : this.tiers.namespace.filter((p) => rulesOf(p, d) !== undefined && this.selects(p, self));
    const isolatedBy = isolating.map((p) => p.id);

    const admin = this.runTier("admin", d, self, m, path);
    if (admin) return decided(admin.allowed, isolatedBy, admin.allowed ? admin.policy : undefined, undefined, path);

    if (isolating.length > 0) {
      for (const p of isolating) {
        const rules = rulesOf(p, d) ?? [];
        for (const [i, r] of rules.entries()) {
          if ((r.action !== "allow" && r.action !== "log") || !m.matches(r, "narrow")) continue;
          path.push(ruleStep("namespace", p, r, i));
          if (r.action === "allow") return decided(true, isolatedBy, p.id, undefined, path);
        }
      }
      const names = isolating.map(policyDisplayName).join(", ");
      return decided(false, isolatedBy, undefined, { tier: "namespace", action: "deny", reason: "isolated", text: `[NetworkPolicy] isolated by ${names}; no rule allows: Deny` }, path);
    }

    const baseline = this.runTier("baseline", d, self, m, path);
    if (baseline) return decided(baseline.allowed, isolatedBy, baseline.allowed ? baseline.policy : undefined, undefined, path);
    return decided(true, isolatedBy, undefined, exempt ?? { tier: "default", action: "allow", reason: "not-isolated", text: "[Default] not isolated: Allow" }, path);
  }

  /** An admin or baseline tier: the decision of its first allow/deny rule that matches, or undefined (no match, or pass). */
  private runTier(tier: "admin" | "baseline", d: Direction, self: PodEndpoint, m: RuleMatcher, path: ExplainStep[]): { allowed: boolean; policy: string } | undefined {
    for (const p of this.tiers[tier]) {
      const rules = rulesOf(p, d);
      if (rules === undefined || !this.selects(p, self)) continue;
      for (const [i, r] of rules.entries()) {
        if (r.action === "pass" && m.sctpPassDrops(r)) {
          path.push({ ...ruleStep(tier, p, r, i), action: "deny", text: `[${TIER_LABEL[tier]}] ${policyDisplayName(p)} ${ruleLabel(r, i)}: Pass of SCTP ports without the sctp match: Deny` });
          return { allowed: false, policy: p.id };
        }
        if (!m.matches(r, r.action === "deny" ? "wide" : "narrow")) continue;
        path.push(ruleStep(tier, p, r, i));
        if (r.action === "log") continue;
        if (r.action === "pass") return undefined;
        return { allowed: r.action === "allow", policy: p.id };
      }
    }
    return undefined;
  }

  private selects(p: PolicyIR, ep: PodEndpoint): boolean {
    return this.podsOf(p.subject).has(ep);
  }

  private podsOf(set: PodSet): Set<PodEndpoint> {
    const key = podSetKey(set);
    let s = this.members.get(key);
    if (!s) {
      s = new Set(this.index.pods(set));
      this.members.set(key, s);
    }
    return s;
  }

  /** The canonical addresses of the node a pod runs on (none when the node is not known). */
  private ownNode(ep: PodEndpoint): Set<string> {
    let s = this.nodeAddrs.get(ep.node);
    if (!s) {
      s = new Set((this.addrs.node(ep.node)?.addresses ?? []).map((a) => this.canon(a)));
      this.nodeAddrs.set(ep.node, s);
    }
    return s;
  }

  peerMatches(peer: Peer, addr: string): boolean {
    switch (peer.kind) {
      case "any":
        return true;
      case "pods": {
        const pod = this.podAt(addr);
        return pod !== undefined && !this.unknown.has(pod) && this.podsOf(peer.pods).has(pod);
      }
      case "ipBlock":
        return this.inCidr(peer.cidr, addr) && !peer.except.some((e) => this.inCidr(e, addr));
      case "nodes": {
        const key = canonicalSelector(peer.nodes);
        let s = this.nodeSelected.get(key);
        if (!s) {
          s = new Set(this.addrs.nodeAddresses(peer.nodes));
          this.nodeSelected.set(key, s);
        }
        return s.has(this.canon(addr));
      }
      case "networkSets":
        return this.addrs.networkSetNets(peer.sets).some((n) => this.inCidr(n, addr));
      case "allOf":
        return peer.peers.every((p) => this.peerMatches(p, addr));
    }
  }

  sctpSupported(): boolean {
    return this.opts.sctpSupported;
  }

  /** `untestable`: the answer for an SCTP port number when the kernel cannot test one (SctpApprox). */
  portMatches(ps: PortSpec, c: Connection, pod: PodEndpoint | undefined, port: number | undefined, untestable: boolean): boolean {
    if (ps.kind === "icmp") {
      const family = c.dst.includes(":") ? 6 : 4;
      if (c.protocol !== "ICMP" || ps.family !== family) return false;
      if (ps.type === undefined) return true;
      if ((c.icmpType ?? echoRequest(family)) !== ps.type) return false;
      return ps.code === undefined || (c.icmpCode ?? 0) === ps.code;
    }
    if (c.protocol === "ICMP" || ps.protocol !== c.protocol) return false;
    if (ps.kind === "protocol") return true;
    if (ps.kind === "range" && ps.protocol === "SCTP" && !this.opts.sctpSupported) return untestable;
    if (port === undefined) return false;
    if (ps.kind === "range") return port >= ps.from && port <= ps.to;
    // Named: a container port of that name and protocol of the pod at that end; never a non-pod.
    return pod !== undefined && pod.ports.some((cp) => cp.name === ps.name && cp.protocol === ps.protocol && cp.containerPort === port);
  }

  private inCidr(text: string, addr: string): boolean {
    let c = this.cidrs.get(text);
    if (!c) {
      c = parseCidr(text);
      this.cidrs.set(text, c);
    }
    let ip = this.ips.get(addr);
    if (!ip) {
      ip = parseIp(addr);
      this.ips.set(addr, ip);
    }
    return c.family === ip.family && cidrContainsIp(c, ip);
  }

  private canon(addr: string): string {
    let c = this.canonical.get(addr);
    if (c === undefined) {
      try {
        c = formatIp(parseIp(addr));
      } catch {
        c = addr;
      }
      this.canonical.set(addr, c);
    }
    return c;
  }
}

/** Does a rule match one connection, seen from one end's direction? */
class RuleMatcher {
  private readonly peerAddr: string;
  private readonly selfAddr: string;

  constructor(
    private readonly ev: PolicyEvaluator,
    d: Direction,
    private readonly c: Connection,
    private readonly srcPod: PodEndpoint | undefined,
    private readonly dstPod: PodEndpoint | undefined,
  ) {
    this.peerAddr = d === "ingress" ? c.src : c.dst;
    this.selfAddr = d === "ingress" ? c.dst : c.src;
  }

  /** `approx`: how SCTP port numbers count when the kernel cannot test them (exact otherwise). */
  matches(r: RuleIR, approx: SctpApprox): boolean {
    const ev = this.ev;
    const wide = approx === "wide";
    const peer = (p: Peer): boolean => ev.peerMatches(p, this.peerAddr);
    const own = (p: Peer): boolean => ev.peerMatches(p, this.selfAddr);
    const dport = (untestable: boolean) => (ps: PortSpec): boolean => ev.portMatches(ps, this.c, this.dstPod, this.c.port, untestable);
    const sport = (untestable: boolean) => (ps: PortSpec): boolean => ev.portMatches(ps, this.c, this.srcPod, this.c.srcPort, untestable);
    if (!r.peers.some(peer) || (r.notPeers ?? []).some(peer)) return false;
    if (r.self && (!r.self.peers.some(own) || r.self.notPeers.some(own))) return false;
    if ((r.ports !== "all" && !r.ports.some(dport(wide))) || (r.notPorts ?? []).some(dport(!wide))) return false;
    if ((r.srcPorts !== undefined && !r.srcPorts.some(sport(wide))) || (r.notSrcPorts ?? []).some(sport(!wide))) return false;
    return true;
  }

  /** A Pass that tests SCTP port numbers the kernel cannot test drops the SCTP packets it might match (fails closed). */
  sctpPassDrops(r: RuleIR): boolean {
    return this.c.protocol === "SCTP" && !this.ev.sctpSupported() && usesSctpPorts(r) && this.matches(r, "wide");
  }
}

function ruleStep(tier: Tier, p: PolicyIR, r: RuleIR, index: number): ExplainStep {
  const policy = policyDisplayName(p);
  const rule = ruleLabel(r, index);
  return { tier, policy, policyId: p.id, rule, ruleIndex: index, action: r.action, text: `[${TIER_LABEL[tier]}] ${policy} ${rule}: ${ACTION_LABEL[r.action]}` };
}

function decided(allowed: boolean, isolatedBy: string[], allowedBy: string | undefined, last: ExplainStep | undefined, path: ExplainStep[] = []): DirectionVerdict {
  return { isolatedBy, allowedBy, allowed, path: last ? [...path, last] : path };
}

function open(): DirectionVerdict {
  return { isolatedBy: [], allowedBy: undefined, allowed: true, path: [] };
}

const key = (p: PodEndpoint): string => `${p.namespace}/${p.pod}`;

const known = (unknown: ReadonlySet<PodEndpoint>, p: PodEndpoint | undefined): PodEndpoint | undefined => (p !== undefined && !unknown.has(p) ? p : undefined);
