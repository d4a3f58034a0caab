/**
 * What one policy may cost the renderer, and what a policy over that cost means.
 *
 * The renderer turns a rule into one line per (peer x own-side peer x port x source port),
 * each tried against its exclusions (notPeers, notPorts, ...): its work is the product of
 * those list lengths. The Kubernetes API bounds a NetworkPolicy only by its object size
 * (1.5 MiB), so a tenant could write 20,000 copies of one peer and 20,000 of one port and
 * make the agent render 400 million lines while nothing else on the node is programmed.
 * Two steps keep one policy from doing that, both pure and both before any product:
 *
 * 1. dedupe: structurally equal peers, ports, exclusions (canonical keys, first one kept,
 *    order otherwise unchanged) and, in the namespace tier, equal rules collapse into one.
 *    OR of equal alternatives is the same alternative, and NetworkPolicy rules are an
 *    unordered union of allows, so the policy means exactly what it meant (its render is
 *    the render of the policy written without the copies). Rules of the ordered tiers are
 *    left alone (their schemas bound how many there are, and log rules count).
 * 2. budget: what is left is priced with policyTerms (the renderer's loop count, a bound
 *    on the lines it emits); a policy over MAX_POLICY_TERMS fails closed, that policy
 *    alone, with a warning naming it and its size (boundPolicy):
 *    - a NetworkPolicy keeps its directions and loses every rule: the pods it selects stay
 *      isolated in the directions it covers and it allows nothing (deny-all for its
 *      policyTypes; other NetworkPolicies selecting the same pods still allow what they allow);
 *    - an Admin / Baseline policy (ClusterNetworkPolicy, GlobalNetworkPolicy): its rules
 *      are kept in order while they fit the budget; a rule that does not fit is
 *      - dropped when it is an allow, a log, or a Baseline pass: the traffic it would have
 *        let through goes on to the next rule or tier, which can only be as strict or
 *        stricter than an allow (a Baseline pass leads to the default, which allows);
 *      - replaced by "deny everything" when it is a deny or an Admin pass, and the rest of
 *        that direction is dropped (nothing gets past a deny of everything). Dropping a
 *        deny would open what it denies; dropping an Admin pass would let a later Admin
 *        allow decide traffic the NetworkPolicy tier was meant to judge. A deny of every
 *        source or destination is the narrowest rule that is sure to deny all the
 *        original denied without rendering its peers.
 *    The budget is per policy, both directions together (ingress first): one policy's
 *    cost is bounded whatever the others do.
 *
 * It does not bound how many policies there are (a namespace's ResourceQuota on
 * `count/networkpolicies.networking.k8s.io` does), and it does not look at selectors'
 * value lists (a selector costs one ipset whatever its size).
 */
import { type Direction, type Peer, type PolicyIR, type PortSpec, type RuleIR, DIRECTIONS, namespaceMatchKey, podSetKey, rulesOf } from "./ir.js";
import { canonicalSelector } from "./selectors.js";

/**
 * The most rule terms (policyTerms) one policy may expand to. Far above what people
 * write (25 peers x 25 ports x 4 rules is 2,500), low enough that the largest policy
 * renders in tens of milliseconds and stays a chain iptables walks quickly.
 */
export const MAX_POLICY_TERMS = 10_000;

/** Canonical text of a peer: equal text, equal addresses. */
export function peerKey(p: Peer): string {
  switch (p.kind) {
    case "any":
      return "any";
    case "pods":
      return `pods(${podSetKey(p.pods)})`;
    case "ipBlock":
      return `net(${p.cidr}${p.except.length ? ` except ${p.except.join(",")}` : ""})`;
    case "nodes":
      return `nodes(${canonicalSelector(p.nodes)})`;
    case "networkSets":
      return `nsets(${p.sets.namespaces === "global" ? "global" : namespaceMatchKey(p.sets.namespaces)}|${canonicalSelector(p.sets.selector)})`;
    case "allOf":
      return `all(${p.peers.map(peerKey).join(";")})`;
  }
}

/** Canonical text of a port spec: equal text, equal packets. */
export function portKey(p: PortSpec): string {
  switch (p.kind) {
    case "protocol":
      return p.protocol;
    case "range":
      return `${p.protocol}:${p.from}-${p.to}`;
    case "named":
      return `${p.protocol}:${p.name}`;
    case "icmp":
      return `icmp${p.family}:${p.type ?? "*"}/${p.code ?? "*"}`;
  }
}

/** `xs` without later items whose key equals an earlier one's; the same array when there are none. */
function uniqueBy<T>(xs: readonly T[], key: (x: T) => string): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const x of xs) {
    const k = key(x);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(x);
  }
  return out.length === xs.length ? (xs as T[]) : out;
}

function dedupePeer(p: Peer): Peer {
  if (p.kind !== "allOf") return p;
  const peers = uniqueBy(p.peers.map(dedupePeer), peerKey);
  return peers.length === 1 ? (peers[0] as Peer) : { kind: "allOf", peers };
}

const peers = (xs: readonly Peer[]): Peer[] => uniqueBy(xs.map(dedupePeer), peerKey);
const ports = (xs: readonly PortSpec[]): PortSpec[] => uniqueBy(xs, portKey);

/** A rule without repeated peers, ports and exclusions: the same packets match. */
export function dedupeRule(r: RuleIR): RuleIR {
  const out: RuleIR = { ...r, peers: peers(r.peers), ports: r.ports === "all" ? "all" : ports(r.ports) };
  if (r.notPeers) out.notPeers = peers(r.notPeers);
  if (r.notPorts) out.notPorts = ports(r.notPorts);
  if (r.srcPorts) out.srcPorts = ports(r.srcPorts);
  if (r.notSrcPorts) out.notSrcPorts = ports(r.notSrcPorts);
  if (r.self) out.self = { peers: peers(r.self.peers), notPeers: peers(r.self.notPeers) };
  return out;
}

/** Canonical text of a whole rule (what it matches and does; not its label). */
export function ruleKey(r: RuleIR): string {
  const list = <T>(xs: readonly T[] | undefined, key: (x: T) => string): string => (xs === undefined ? "-" : `[${xs.map(key).join(";")}]`);
  return [
    r.action,
    list(r.peers, peerKey),
    list(r.notPeers, peerKey),
    r.ports === "all" ? "all" : list(r.ports, portKey),
    list(r.notPorts, portKey),
    list(r.srcPorts, portKey),
    list(r.notSrcPorts, portKey),
    r.self ? `${list(r.self.peers, peerKey)}!${list(r.self.notPeers, peerKey)}` : "-",
  ].join(" ");
}

/** The policy with every rule deduplicated (and, in the namespace tier, equal rules once). */
export function dedupePolicy(p: PolicyIR): PolicyIR {
  const dir = (rules: RuleIR[] | undefined): RuleIR[] | undefined => {
    if (rules === undefined) return undefined;
    const deduped = rules.map(dedupeRule);
    return p.tier === "namespace" ? uniqueBy(deduped, ruleKey) : deduped;
  };
  return { ...p, ingress: dir(p.ingress), egress: dir(p.egress) };
}

/** A peer's share of a term: an allOf is tested part by part. */
const peerWeight = (p: Peer): number => (p.kind === "allOf" ? Math.max(1, p.peers.reduce((n, q) => n + peerWeight(q), 0)) : 1);
const weightOf = (xs: readonly Peer[]): number => xs.reduce((n, p) => n + peerWeight(p), 0);

/**
 * What rendering the rule costs, in terms: its peers (allOf parts counted) x own-side peers
 * x ports x source ports, each tried against every exclusion. At least 1 (a rule costs a
 * line and a check even when it matches nothing).
 */
export function ruleTerms(r: RuleIR): number {
  const product = weightOf(r.peers) * (r.self ? weightOf(r.self.peers) : 1) * (r.ports === "all" ? 1 : r.ports.length) * (r.srcPorts ? r.srcPorts.length : 1);
  const exclusions = (r.notPeers?.length ?? 0) + (r.self?.notPeers.length ?? 0) + (r.notPorts?.length ?? 0) + (r.notSrcPorts?.length ?? 0);
  return Math.max(1, product * (1 + exclusions));
}

/** Every rule's terms, both directions. */
export function policyTerms(p: PolicyIR): number {
  let n = 0;
  for (const d of DIRECTIONS) for (const r of rulesOf(p, d) ?? []) n += ruleTerms(r);
  return n;
}

/** What stands in for a deny (or Admin pass) rule that does not fit: deny every peer, port and protocol. */
export const DENY_EVERYTHING: RuleIR = { action: "deny", label: "over the size limit: deny all", peers: [{ kind: "any" }], ports: "all" };

export interface BoundedPolicy {
  policy: PolicyIR;
  /** Set when the policy was over MAX_POLICY_TERMS and failed closed: names it, its size and what it now does. */
  warning?: string | undefined;
}

const DIRECTION_NAME: Record<Direction, string> = { ingress: "Ingress", egress: "Egress" };

/** "NetworkPolicy prod/web", "ClusterNetworkPolicy block-all": how warnings name a policy. */
function policyName(p: PolicyIR): string {
  const o = p.origin;
  if (!o) return `policy ${p.id}`;
  return `${o.kind} ${o.namespace !== undefined ? `${o.namespace}/` : ""}${o.name}`;
}

/**
 * The policy deduplicated and held to the budget `limit` (MAX_POLICY_TERMS unless a test
 * says otherwise); see the file's header for what failing closed means per tier.
 */
export function boundPolicy(p: PolicyIR, limit = MAX_POLICY_TERMS): BoundedPolicy {
  const deduped = dedupePolicy(p);
  const terms = policyTerms(deduped);
  if (terms <= limit) return { policy: deduped };
  const size = `expands to ${terms.toLocaleString("en-US")} rule terms after removing duplicates, over the limit of ${limit.toLocaleString("en-US")}`;
  if (p.tier === "namespace") {
    const covered = DIRECTIONS.filter((d) => rulesOf(p, d) !== undefined).map((d) => DIRECTION_NAME[d]);
    return {
      policy: { ...deduped, ingress: deduped.ingress && [], egress: deduped.egress && [] },
      warning: `${policyName(p)} ${size}: it fails closed: the pods it selects stay isolated for ${covered.join(" and ")} and none of its rules allow anything until it is made smaller`,
    };
  }
  let budget = limit;
  const changed: string[] = [];
  const fit = (d: Direction, rules: RuleIR[] | undefined): RuleIR[] | undefined => {
    if (rules === undefined) return undefined;
    const out: RuleIR[] = [];
    for (const [i, r] of rules.entries()) {
      const cost = ruleTerms(r);
      if (cost <= budget) {
        budget -= cost;
        out.push(r);
        continue;
      }
      const label = `${d} ${r.label ?? `rule ${i + 1}`} (${cost.toLocaleString("en-US")} terms)`;
      if (r.action === "deny" || (r.action === "pass" && p.tier === "admin")) {
        changed.push(`${label} denies everything instead, and the ${d} rules after it are dropped`);
        out.push(DENY_EVERYTHING);
        budget = Math.max(0, budget - 1);
        break;
      }
      changed.push(`${label} is dropped`);
    }
    return out;
  };
  const ingress = fit("ingress", deduped.ingress);
  const egress = fit("egress", deduped.egress);
  return { policy: { ...deduped, ingress, egress }, warning: `${policyName(p)} ${size}: it fails closed: ${changed.join("; ")}` };
}
