/**
 * The reference meaning of the policy IR, straight from the Kubernetes documentation and
 * independent of how the renderer encodes it: is this one connection allowed? Used by the
 * tests to check the rendered chains, and good for explaining a decision or predicting
 * the reachability matrix of a sandbox.
 *
 * Only the namespace tier exists so far: a pod selected by a policy of a direction is
 * isolated in that direction, and then a connection is allowed when at least one rule of
 * one of those policies matches it. Both ends must allow it (egress of the source pod,
 * ingress of the destination pod); a non-pod end has no policy.
 */
import type { PodEndpoint, Protocol } from "../model/endpoint.js";
import { cidrContainsIp, formatIp, parseCidr, parseIp } from "../model/ip.js";
import { EndpointIndex } from "./endpointIndex.js";
import type { PolicyModel } from "./model.js";
import { type Direction, type Peer, type PolicyIR, type PortSpec, type Tier, comparePolicies, rulesOf } from "./ir.js";

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
}

/**
 * One step of the path that decided a direction, for `sluicectl explain`: a rule that
 * matched (with its action), or the end of a tier / the default. `text` is one line such
 * as `[Admin] tenant-isolation rule 2: Deny` or `[NetworkPolicy] isolated by x/default-deny, no rule allows: Deny`.
 */
export interface ExplainStep {
  tier: Tier | "default";
  /** The policy's display name (origin), when a policy took the step. */
  policy?: string | undefined;
  rule?: string | undefined;
  action: "allow" | "deny" | "pass" | "log";
  text: string;
}

export interface EvaluateOptions {
  /** False: SCTP port entries are left out, as the renderer does (they open nothing). */
  sctpSupported: boolean;
}

export interface DirectionVerdict {
  /** Policies that select the pod in this direction (empty: not isolated). */
  isolatedBy: string[];
  /** The policy whose rule allowed it, when isolated and allowed. */
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

export class PolicyEvaluator {
  private readonly byAddr = new Map<string, PodEndpoint>();
  private readonly canonical = new Map<string, string>();
  private readonly policies: PolicyIR[];

  constructor(
    policies: readonly PolicyIR[],
    private readonly index: EndpointIndex,
    private readonly opts: EvaluateOptions,
  ) {
    this.policies = [...policies].filter((p) => p.tier === "namespace").sort(comparePolicies);
    for (const ep of index.allPods()) for (const f of [4, 6] as const) for (const a of index.addresses(ep, f)) this.byAddr.set(a, ep);
  }

  /**
   * The evaluator of a whole policy model (what explain uses). Endpoints with unknown
   * metadata match no selector, as in the renderer.
   */
  static fromModel(model: PolicyModel, opts: EvaluateOptions): PolicyEvaluator {
    const known = model.endpoints.filter((ep) => ep.metadataKnown !== false);
    return new PolicyEvaluator(model.policies, new EndpointIndex(known, model.namespaces), opts);
  }

  podAt(addr: string): PodEndpoint | undefined {
    let c = this.canonical.get(addr);
    if (c === undefined) {
      c = canonical(addr);
      this.canonical.set(addr, c);
    }
    return this.byAddr.get(c);
  }

  evaluate(c: Connection): Verdict {
    const srcPod = this.podAt(c.src);
    const dstPod = this.podAt(c.dst);
    // A pod cannot block access to itself.
    if (srcPod !== undefined && srcPod === dstPod) return { allowed: true, egress: open(), ingress: open() };
    const egress = srcPod ? this.side("egress", srcPod, c, dstPod) : open();
    const ingress = dstPod ? this.side("ingress", dstPod, c, dstPod) : open();
    return { allowed: egress.allowed && ingress.allowed, egress, ingress };
  }

  /** `self`: the pod whose policies apply; the peer is the other end. */
  private side(d: Direction, self: PodEndpoint, c: Connection, dstPod: PodEndpoint | undefined): DirectionVerdict {
    const peerAddr = d === "ingress" ? c.src : c.dst;
    const isolatedBy: string[] = [];
    let allowedBy: string | undefined;
    for (const p of this.policies) {
      const rules = rulesOf(p, d);
      if (rules === undefined || !this.index.pods(p.subject).includes(self)) continue;
      isolatedBy.push(p.id);
      if (allowedBy !== undefined) continue;
      for (const r of rules) {
        if (r.action !== "allow") continue;
        const peerOk = r.peers.some((peer) => this.peerMatches(peer, peerAddr));
        const portOk = r.ports === "all" || r.ports.some((ps) => this.portMatches(ps, c, dstPod));
        if (peerOk && portOk) {
          allowedBy = p.id;
          break;
        }
      }
    }
    return { isolatedBy, allowedBy, allowed: isolatedBy.length === 0 || allowedBy !== undefined, path: [] };
  }

  private peerMatches(peer: Peer, addr: string): boolean {
    if (peer.kind === "any") return true;
    if (peer.kind === "pods") {
      const pod = this.podAt(addr);
      return pod !== undefined && this.index.pods(peer.pods).includes(pod);
    }
    if (peer.kind !== "ipBlock") return false; // nodes / networkSets: the tiers work fills these in
    const ip = parseIp(addr);
    const inBlock = (text: string): boolean => {
      const c = parseCidr(text);
      return c.family === ip.family && cidrContainsIp(c, ip);
    };
    return inBlock(peer.cidr) && !peer.except.some(inBlock);
  }

  private portMatches(ps: PortSpec, c: Connection, dstPod: PodEndpoint | undefined): boolean {
    if (ps.kind === "icmp") return false; // connections are TCP/UDP/SCTP so far
    if (c.protocol === "ICMP" || ps.protocol !== c.protocol) return false;
    if (ps.protocol === "SCTP" && !this.opts.sctpSupported) return false;
    if (ps.kind === "protocol") return true;
    if (ps.kind === "range") return c.port >= ps.from && c.port <= ps.to;
    // Named: the destination pod's container port of that name and protocol; never a non-pod.
    return dstPod !== undefined && dstPod.ports.some((cp) => cp.name === ps.name && cp.protocol === ps.protocol && cp.containerPort === c.port);
  }
}

function open(): DirectionVerdict {
  return { isolatedBy: [], allowedBy: undefined, allowed: true, path: [] };
}

function canonical(addr: string): string {
  try {
    return formatIp(parseIp(addr));
  } catch {
    return addr;
  }
}
