/**
 * Policy IR -> iptables chains + ipsets (filter and raw tables, one family), Felix's layout:
 *
 *   SLUICE-FORWARD: -i slc+ -j slc-from-wl         (egress of local pods)
 *                   -o slc+ -j slc-to-wl           (ingress of local pods)
 *                   ... then the lead's cluster accept rules
 *   SLUICE-INPUT:   [IPv6: ICMPv6 neighbour discovery / MLD from pods accepted]
 *                   -i slc+ -j MARK --set-xmark 0x40000/0x40000, -i slc+ -j slc-from-wl
 *                                                  (pod -> this host: egress policy, NetworkPolicy exempt)
 *   SLUICE-OUTPUT:  -o slc+ -j ACCEPT              (this host -> local pods: always allowed)
 *   (kube-proxy in IPVS mode: kubeIpvs.ts adds Service traffic's INPUT -> OUTPUT path)
 *
 *   slc-from-wl:    -i <iface> -g slc-fw-<iface>   per local pod, then -j DROP (fail closed)
 *   slc-to-wl:      -o <iface> -g slc-tw-<iface>   per local pod, then -j DROP
 *   slc-fw-<iface>: anti-spoofing; conntrack; clear the accept and pass bits; [unknown labels: DROP];
 *                   [when a NetworkPolicy selects it: to itself (a Service hairpin) sets the to-host bit];
 *                   admin tier:     per selecting policy `[-m mark --mark 0x0/0x20000] -j slc-po-<hash>`
 *                                   (the guard: no jump once a pass set the pass bit; only after a chain
 *                                   that can pass) + `-m mark --mark ACCEPT -j RETURN` (after a chain that can allow);
 *                   namespace tier: per selecting policy `-m mark --mark 0x0/0x40000 -j slc-po-<hash>` +
 *                                   `-m mark --mark ACCEPT -j RETURN`, then `-m mark --mark 0x0/0x40000 -j DROP`
 *                                   (isolated), when any selects it: a packet with the to-host bit (to its own
 *                                   node, to itself) skips the tier;
 *                   baseline tier:  clear the pass bit (if an admin chain can pass), policies as in the
 *                                   admin tier (the last one without its RETURN), then -j RETURN (default allow)
 *   slc-tw-<iface>: the same without anti-spoofing, with slc-pi-<hash>; it clears the to-host bit too (only a
 *                   hairpin sets it here: this host's own traffic to its pods is accepted in SLUICE-OUTPUT)
 *   slc-pi/po-<hash>: one chain per policy and direction, shared by all local pods it selects;
 *                   rules in order: allow sets the accept bit, pass the pass bit (each followed by
 *                   a RETURN on that bit), deny is a DROP, log a rate-limited LOG (and on).
 *   slc-ri/ro-<hash>: a rule that cannot be one line per (peer x port): its exclusions (notPeers,
 *                   notPorts, ...) RETURN first, then its matches with the action;
 *   slc-li/lo-<hash>: the LOG of a log rule matched by several lines, reached by goto (logs once).
 *
 * And in the raw table, before conntrack sees the packet (Felix's cali-PREROUTING):
 *
 *   SLUICE-PREROUTING: -i slc+ -j slc-antispoof
 *   slc-antispoof:  [IPv6: ICMPv6 from a link-local or the unspecified source -g slc-antispoof-nd]
 *                   per local pod `! -s <its address> -i <iface> -j DROP` (several addresses: a RETURN
 *                   per address, then -i <iface> -j DROP; none of this family: -i <iface> -j DROP)
 *   slc-antispoof-nd: the neighbour discovery / MLD types SLUICE-INPUT accepts RETURN, the rest DROP
 *
 * A forged source never reaches conntrack, so it can neither ride a flow's entry (the
 * RELATED,ESTABLISHED accepts; an ICMP error made RELATED to a neighbour's flow) nor change
 * one. The filter chains check the source again, before their own conntrack accept.
 *
 * Allowed traffic RETURNs to the caller (SLUICE-FORWARD then reaches the next dispatch or
 * the accept rules); denied traffic is DROPped inside. The dispatch chains `goto` the
 * endpoint chain, so a RETURN there goes straight back to SLUICE-FORWARD / SLUICE-INPUT.
 * In SLUICE-INPUT the dispatch is a jump (not a goto), so an allowed packet continues in
 * SLUICE-INPUT and then INPUT, whatever rules come after ours.
 *
 * Peers are ipsets, never per-pod rules: the rule count grows with policies + local pods,
 * and membership changes only touch sets. Set names hash the set's definition, so they
 * are stable across runs and nodes, and a name's type never changes. Rules are data
 * (rules.ts; iptablesFormat.ts writes the notation above), with one port match per rule
 * (iptables-nft merges a second one into the first).
 */
import { createHash } from "node:crypto";
import type { Protocol } from "../model/endpoint.js";
import { HOST_IFACE_PREFIX, type PodEndpoint } from "../model/endpoint.js";
import { type Cidr, type Family, formatCidr, formatIp, parseCidr, bitsOf } from "../model/ip.js";
import { EndpointIndex } from "../policy/endpointIndex.js";
import { ClusterAddresses } from "../policy/clusterAddresses.js";
import { policyDisplayName } from "../policy/evaluate.js";
import { type Direction, type NetworkSetMatch, type Peer, type PodSet, type PolicyIR, type PortSpec, type RuleIR, type SctpApprox, type Tier, comparePolicies, namespaceMatchKey, podSetKey, protocolName, rulesOf, usesSctpPorts } from "../policy/ir.js";
import { canonicalSelector } from "../policy/selectors.js";
import type { LabelSelector } from "../config/k8sSchemas.js";
import { networkPolicyToIr } from "../policy/networkPolicy.js";
import type { NetworkSetInfo, NodeInfo, PolicyModel } from "../policy/model.js";
import type { IpsetSpec, IpsetType } from "./ipsetSpec.js";
import { IPSET_NAME_MAX } from "./ipsetSpec.js";
import type { PolicyRender, PolicyRenderInput } from "./policyContract.js";
import type { ChainSpec } from "./ruleset.js";
import type { CompiledPolicy, RenderMemo, SetSource, SetUse } from "./renderMemo.js";
import { ipsetNetMember, ipsetPortMember } from "./iptablesFormat.js";
import { type Action, type AddrDir, ACCEPT, DROP, type IpProtocol, type MarkBits, type Match, type PortProtocol, RETURN, type Rule, ctState, dst, goTo, inIface, inSet, jump, markIs, outIface, protocol, rule, ruleKey, setMark, src } from "./rules.js";

export const CHAIN_FROM_WL = "slc-from-wl";
export const CHAIN_TO_WL = "slc-to-wl";
/** raw table: the source check of every packet from a local pod, before conntrack. */
export const CHAIN_ANTISPOOF = "slc-antispoof";
/** raw table, IPv6: what a pod may send from a link-local or the unspecified address. */
export const CHAIN_ANTISPOOF_ND = "slc-antispoof-nd";
export const CHAIN_NAME_MAX = 28;

/** Set by a policy chain that allows the packet. */
export const MARK_ACCEPT: MarkBits = { value: 0x10000, mask: 0x10000 };
/** As a match: the accept bit is not set. */
const MARK_NOT_ACCEPTED: MarkBits = { value: 0, mask: 0x10000 };
/** Set by a Pass (admin or baseline tier): the rest of the tier is skipped. */
export const MARK_PASS: MarkBits = { value: 0x20000, mask: 0x20000 };
/** As a match: the pass bit is not set. As a MARK: clears it (before the baseline tier). */
export const MARK_PASS_CLEAR: MarkBits = { value: 0, mask: 0x20000 };
/** Clears both policy bits, leaving everyone else's mark bits alone. */
export const MARK_CLEAR: MarkBits = { value: 0, mask: 0x30000 };
/**
 * The to-host bit: the packet is one NetworkPolicy does not judge. Set in SLUICE-INPUT on
 * what a local pod sends to this host (cleared in SLUICE-FORWARD), and in an endpoint chain
 * on a packet from the pod back to itself (a Service the service proxy sends back to it).
 * Such a packet goes through the Admin tier and then skips the NetworkPolicy tier for the
 * Baseline tier: the Kubernetes docs exempt traffic between a pod and its own node, and a
 * pod to itself, from NetworkPolicy; the ClusterNetworkPolicy API exempts neither from its
 * tiers (its conformance tests deny a pod's egress to its own node).
 */
export const MARK_TO_HOST: MarkBits = { value: 0x40000, mask: 0x40000 };
export const MARK_TO_HOST_CLEAR: MarkBits = { value: 0, mask: 0x40000 };
/** As a match: a packet NetworkPolicy judges (the to-host bit is not set). */
const MARK_NOT_TO_HOST = MARK_TO_HOST_CLEAR;
/** Clears the policy bits and the to-host bit (an ingress chain: nothing before it may set that bit for us). */
const MARK_CLEAR_ALL: MarkBits = { value: 0, mask: 0x70000 };

/** Every pod interface (the host side of every local pod's veth) in or out. */
const PODS_IN = inIface(HOST_IFACE_PREFIX, true);
const PODS_OUT = outIface(HOST_IFACE_PREFIX, true);
/** What the kernel accepts as a link name and iptables as an exact interface match (no `+`). */
const IFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;
const CT_ESTABLISHED = rule(ACCEPT, ctState("RELATED", "ESTABLISHED"));
const CT_INVALID = rule(DROP, ctState("INVALID"));
const icmp6Type = (type: number): Match => ({ kind: "icmp", family: 6, type });
/** ICMPv6 a pod must send to its host for IPv6 to work at all: MLD 130-132, RS 133, NS 135, NA 136. */
const ICMPV6_HOST_TYPES = [130, 131, 132, 133, 135, 136];

/** Log rules: at most this many lines a minute per rule, after a burst of LOG_BURST. */
export const LOG_PER_MINUTE = 10;
export const LOG_BURST = 10;
/** The kernel keeps 29 characters of a LOG prefix. */
export const LOG_PREFIX_MAX = 29;

const hash = (text: string, len: number): string => createHash("sha256").update(text).digest("hex").slice(0, len);

/** `<prefix><suffix>`, or `<prefix><hash of suffix>` when that would be over 28 characters. */
function chainName(prefix: string, suffix: string): string {
  const name = prefix + suffix;
  return name.length <= CHAIN_NAME_MAX ? name : prefix + hash(suffix, CHAIN_NAME_MAX - prefix.length);
}

export function endpointChainName(direction: Direction, hostIface: string): string {
  return chainName(direction === "egress" ? "slc-fw-" : "slc-tw-", hostIface);
}

/** The chain of one policy in one direction: stable as long as the policy's id is. */
export function policyChainName(direction: Direction, policyId: string): string {
  return (direction === "ingress" ? "slc-pi-" : "slc-po-") + hash(policyId, 16);
}

const SET_KIND: Record<IpsetType, string> = { "hash:ip": "ip", "hash:net": "net", "hash:ip,port": "port" };

/** `slc4-<ip|net|port>-<16 hex of the definition>`: at most 26 characters. */
export function ipsetName(family: Family, type: IpsetType, definition: string): string {
  const name = `slc${family}-${SET_KIND[type]}-${hash(`${type}|${definition}`, 16)}`;
  if (name.length > IPSET_NAME_MAX) throw new Error(`ipset name ${name} is over ${IPSET_NAME_MAX} characters`);
  return name;
}

/** NetworkPolicies only -> PolicyRender (tests and benchmarks of the namespace tier). */
export function renderPolicy(input: PolicyRenderInput): PolicyRender {
  return renderPolicyIr({ ...input, policies: input.networkPolicies.map(networkPolicyToIr) });
}

export interface PolicyModelRenderInput {
  family: Family;
  nodeName: string;
  model: PolicyModel;
  sctpSupported: boolean;
  /** What the previous render of this family can lend this one (renderMemo.ts); the result is the same without it. */
  memo?: RenderMemo | undefined;
}

/** The whole policy model (every tier) -> PolicyRender: the entry point the agent calls. */
export function renderPolicyModel(input: PolicyModelRenderInput): PolicyRender {
  const { model } = input;
  return renderPolicyIr({ family: input.family, nodeName: input.nodeName, sctpSupported: input.sctpSupported, endpoints: model.endpoints, namespaces: model.namespaces, nodes: model.nodes, networkSets: model.networkSets, policies: model.policies, memo: input.memo });
}

export interface PolicyIrRenderInput {
  family: Family;
  nodeName: string;
  endpoints: PodEndpoint[];
  namespaces: PolicyRenderInput["namespaces"];
  /** For `nodes` peers; none when absent. */
  nodes?: NodeInfo[] | undefined;
  /** For `networkSets` peers; none when absent. */
  networkSets?: NetworkSetInfo[] | undefined;
  policies: PolicyIR[];
  sctpSupported: boolean;
  memo?: RenderMemo | undefined;
}

/** The IR of every tier -> PolicyRender. */
export function renderPolicyIr(input: PolicyIrRenderInput): PolicyRender {
  const { family } = input;
  const memo = input.memo;
  if (memo && (memo.family !== family || memo.sctpSupported !== input.sctpSupported)) throw new Error(`render memo of IPv${memo.family} (sctp ${memo.sctpSupported}) given an IPv${family} (sctp ${input.sctpSupported}) render`);
  memo?.begin({ endpoints: input.endpoints, namespaces: input.namespaces, nodes: input.nodes ?? [], networkSets: input.networkSets ?? [] });
  // An endpoint whose Pod or Namespace object is missing has unknown labels: it must not
  // match any selector (as a peer it would be let in by NotIn/DoesNotExist selectors, as a
  // subject it would escape label-selected isolation), so it is left out of the index and,
  // when local, isolated both ways below (fail closed).
  const known = input.endpoints.filter((ep) => ep.metadataKnown !== false);
  const index = new EndpointIndex(known, input.namespaces);
  const sets = new SetRegistry(family, index, new ClusterAddresses(input.nodes ?? [], input.networkSets ?? [], index), memo);

  // Local endpoints with a usable interface name, one per interface, sorted by interface.
  // A malformed name would make iptables-restore reject the whole table, so such an
  // endpoint gets no chain: its traffic meets the dispatch chains' final DROP.
  const byIface = new Map<string, PodEndpoint>();
  for (const ep of input.endpoints) {
    if (ep.node !== input.nodeName || !IFACE_NAME.test(ep.hostIface) || byIface.has(ep.hostIface)) continue;
    byIface.set(ep.hostIface, ep);
  }
  const locals = [...byIface.values()].sort((a, b) => (a.hostIface < b.hostIface ? -1 : a.hostIface > b.hostIface ? 1 : 0));
  // Subjects are matched against the local pods alone: a policy's chains matter only for
  // the pods it selects here, and 1,000 subjects over every pod of a large cluster were the
  // largest part of rendering one label change.
  const localIndex = new EndpointIndex(locals.filter((ep) => ep.metadataKnown !== false), input.namespaces);

  // Which policy chains (in evaluation order) each local endpoint jumps to, per direction and tier.
  const selecting = new Map<PodEndpoint, Record<Direction, TierChains>>(locals.map((ep) => [ep, { ingress: noChains(), egress: noChains() }]));
  const policyChains: ChainSpec[] = [];
  for (const p of [...input.policies].sort(comparePolicies)) {
    const selected = localIndex.pods(p.subject);
    if (selected.length === 0) continue;
    for (const d of ["ingress", "egress"] as const) {
      const rules = rulesOf(p, d);
      if (rules === undefined) continue;
      const rendered = memo ? memo.compiled(p, d, () => sets.recording(() => renderPolicyRules(p, d, rules, sets, input.sctpSupported))) : renderPolicyRules(p, d, rules, sets, input.sctpSupported);
      if (memo) for (const use of (rendered as CompiledPolicy).sets) sets.use(use);
      // An admin/baseline policy that matches nothing here has no effect; a NetworkPolicy isolates.
      if (p.tier !== "namespace" && rendered.rules.length === 0) continue;
      const name = policyChainName(d, p.id);
      const jump: PolicyJump = { chain: name, allows: rendered.allows, passes: rendered.passes };
      for (const ep of selected) selecting.get(ep)?.[d][p.tier].push(jump);
      policyChains.push({ name, rules: rendered.rules }, ...rendered.extra);
    }
  }

  const ifaces = locals.map((ep) => ep.hostIface).join(",");
  const dispatch = (name: string, make: () => Rule[]): ChainSpec => ({ name, rules: memo ? memo.chainRules(name, ifaces, make) : make() });
  const chains: ChainSpec[] = [
    dispatch(CHAIN_FROM_WL, () => [...locals.map((ep) => rule(goTo(endpointChainName("egress", ep.hostIface)), inIface(ep.hostIface))), rule(DROP)]),
    dispatch(CHAIN_TO_WL, () => [...locals.map((ep) => rule(goTo(endpointChainName("ingress", ep.hostIface)), outIface(ep.hostIface))), rule(DROP)]),
  ];
  for (const ep of locals) {
    const sel = selecting.get(ep) ?? { ingress: noChains(), egress: noChains() };
    const own = index.addresses(ep, family);
    const unknown = ep.metadataKnown === false;
    for (const d of ["egress", "ingress"] as const) {
      const name = endpointChainName(d, ep.hostIface);
      const make = (): Rule[] => endpointRules(d, sel[d], own, family, unknown);
      chains.push({ name, rules: memo ? memo.chainRules(name, JSON.stringify([sel[d], own, unknown]), make) : make() });
    }
  }
  chains.push(...policyChains.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
  const rawChains = antiSpoofChains(locals, index, family, memo);

  memo?.end();
  const icmp = family === 6 ? ICMPV6_HOST_TYPES.map((t) => rule(ACCEPT, PODS_IN, protocol("ipv6-icmp"), icmp6Type(t))) : [];
  return {
    rawPreroutingRules: [rule(jump(CHAIN_ANTISPOOF), PODS_IN)],
    rawChains,
    forwardRules: [rule(setMark(MARK_TO_HOST_CLEAR), PODS_IN), rule(jump(CHAIN_FROM_WL), PODS_IN), rule(jump(CHAIN_TO_WL), PODS_OUT)],
    inputRules: [...icmp, rule(setMark(MARK_TO_HOST), PODS_IN), rule(jump(CHAIN_FROM_WL), PODS_IN)],
    outputRules: [rule(ACCEPT, PODS_OUT)],
    chains,
    ipsets: sets.specs(),
    localEndpoints: locals.map((ep) => ({ hostIface: ep.hostIface, addresses: [...index.addresses(ep, family)] })),
  };
}

/**
 * The raw table's chains: every local pod may send from its own addresses only. Link-local
 * and unspecified IPv6 sources are the exception a pod needs for neighbour discovery and
 * MLD with its node; the kernel never forwards such a packet, so it can only reach the
 * node, and only the ICMPv6 types SLUICE-INPUT accepts get that far. An interface with
 * no chain in the filter table (no local pod) is not looked at here: the dispatch chains
 * drop all of its traffic.
 */
function antiSpoofChains(locals: readonly PodEndpoint[], index: EndpointIndex, family: Family, memo: RenderMemo | undefined): ChainSpec[] {
  const host = bitsOf(family);
  const owned = locals.map((ep) => ({ iface: ep.hostIface, own: index.addresses(ep, family) }));
  // One rule per local pod: kept as the same array while no local pod's interface or
  // addresses changed, so that the thread sends it once and the driver hashes it once.
  const make = (): Rule[] => {
    const rules: Rule[] = family === 6 ? ["fe80::/10", "::/128"].map((from) => rule(goTo(CHAIN_ANTISPOOF_ND), src(from), protocol("ipv6-icmp"))) : [];
    for (const { iface, own } of owned) {
      const i = inIface(iface);
      if (own.length === 1) rules.push(rule(DROP, src(`${own[0] as string}/${host}`, true), i));
      else rules.push(...own.map((a) => rule(RETURN, src(`${a}/${host}`), i)), rule(DROP, i));
    }
    return rules;
  };
  const chains: ChainSpec[] = [{ name: CHAIN_ANTISPOOF, rules: memo ? memo.chainRules(CHAIN_ANTISPOOF, JSON.stringify(owned), make) : make() }];
  if (family === 6) {
    const nd = (): Rule[] => [...ICMPV6_HOST_TYPES.map((t) => rule(RETURN, protocol("ipv6-icmp"), icmp6Type(t))), rule(DROP)];
    chains.push({ name: CHAIN_ANTISPOOF_ND, rules: memo ? memo.chainRules(CHAIN_ANTISPOOF_ND, "", nd) : nd() });
  }
  return chains;
}

/** A policy chain an endpoint chain jumps to, and whether it can set the accept / pass bit. */
interface PolicyJump {
  chain: string;
  allows: boolean;
  passes: boolean;
}
type TierChains = Record<Tier, PolicyJump[]>;
const noChains = (): TierChains => ({ admin: [], namespace: [], baseline: [] });

/**
 * One local endpoint's chain for one direction. `tiers`: the chains of the policies
 * selecting it, per tier, in order; `addrs`: its own addresses (egress anti-spoofing, and
 * what makes a packet one to itself); `unknown`: its Pod or Namespace object is missing,
 * so it is isolated both ways until its labels are known.
 */
function endpointRules(d: Direction, tiers: TierChains, addrs: readonly string[], family: Family, unknown = false): Rule[] {
  const rules: Rule[] = [];
  const host = bitsOf(family);
  // Egress: the source check comes before the conntrack accept, so that nothing here lets a
  // forged packet ride an existing flow, even without the raw table's check (defence in depth).
  if (d === "egress") {
    if (addrs.length === 0) {
      // No address of this family: nothing it sends in this family can be genuine.
      rules.push(rule(DROP));
      return rules;
    }
    if (addrs.length === 1) rules.push(rule(DROP, src(`${addrs[0] as string}/${host}`, true)));
    else {
      // Several addresses (not something Kubernetes does, but a CNI record may): flag any, drop the rest.
      rules.push(rule(setMark(MARK_CLEAR)));
      for (const a of addrs) rules.push(rule(setMark(MARK_ACCEPT), src(`${a}/${host}`)));
      rules.push(rule(DROP, markIs(MARK_NOT_ACCEPTED)));
    }
  }
  rules.push(CT_ESTABLISHED, CT_INVALID);
  // The to-host bit matters only where a NetworkPolicy selects the pod: the egress chain keeps
  // the one SLUICE-INPUT set, the ingress chain starts from none.
  const npTier = tiers.namespace.length > 0;
  rules.push(rule(setMark(d === "ingress" && npTier ? MARK_CLEAR_ALL : MARK_CLEAR)));
  if (unknown) {
    rules.push(rule(DROP)); // labels unknown: fail closed (its own node and itself included: an Admin rule might deny them)
    return rules;
  }
  // A packet to itself reaches the host only through a Service hairpin: NetworkPolicy cannot
  // block it, the Admin and Baseline tiers judge it.
  if (npTier) for (const a of addrs) rules.push(rule(setMark(MARK_TO_HOST), (d === "egress" ? dst : src)(`${a}/${host}`)));
  const accepted = rule(RETURN, markIs(MARK_ACCEPT));
  // Admin and baseline tiers: the first chain to allow returns (deny drops inside); once a
  // chain has passed, the rest of the tier is skipped. Checks no chain can need are left out.
  const tier = (jumps: readonly PolicyJump[], last: "return" | "continue"): void => {
    let passed = false;
    jumps.forEach((j, i) => {
      rules.push(passed ? rule(jump(j.chain), markIs(MARK_PASS_CLEAR)) : rule(jump(j.chain)));
      if (j.allows && (last === "continue" || i < jumps.length - 1)) rules.push(accepted);
      passed ||= j.passes;
    });
  };
  tier(tiers.admin, "continue");
  if (npTier) {
    // Isolated: nothing but what a NetworkPolicy allows, except what has the to-host bit (to
    // its own node, to itself), which goes on to the baseline tier as if no NetworkPolicy selected the pod.
    for (const j of tiers.namespace) rules.push(rule(jump(j.chain), markIs(MARK_NOT_TO_HOST)), accepted);
    rules.push(rule(DROP, markIs(MARK_NOT_TO_HOST)));
  }
  // Baseline tier: reached when no NetworkPolicy isolates the pod, or by to-host packets; a pass there skips to the default.
  if (tiers.baseline.length > 0 && tiers.admin.some((j) => j.passes)) rules.push(rule(setMark(MARK_PASS_CLEAR)));
  tier(tiers.baseline, "return");
  rules.push(rule(RETURN)); // default allow
  return rules;
}

/** A log rule's prefix: `slc-<tier A|N|B><direction i|e> <policy> r<n> `, at most 29 characters. */
export function logPrefix(p: PolicyIR, d: Direction, ruleIndex: number): string {
  const head = `slc-${p.tier === "admin" ? "A" : p.tier === "baseline" ? "B" : "N"}${d === "ingress" ? "i" : "e"} `;
  const tail = ` r${ruleIndex + 1} `;
  let name = policyDisplayName(p).replace(/[^A-Za-z0-9._:/-]/g, "_");
  const room = Math.max(6, LOG_PREFIX_MAX - head.length - tail.length);
  if (name.length > room) name = `${name.slice(0, room - 5)}~${hash(name, 4)}`;
  return `${head}${name}${tail}`.slice(0, LOG_PREFIX_MAX);
}

/** The body of slc-pi-/slc-po-<hash>, and the rule and log chains some of its rules need. */
function renderPolicyRules(p: PolicyIR, d: Direction, rules: readonly RuleIR[], sets: SetRegistry, sctp: boolean): { rules: Rule[]; extra: ChainSpec[]; allows: boolean; passes: boolean } {
  const out: Rule[] = [];
  const extra: ChainSpec[] = [];
  let allows = false;
  let passes = false;
  const compiler = new RuleCompiler(p, d, sets, sctp);
  let pendingReturn: Rule | undefined;
  /** The lines of one compiled rule with `target`, in a chain of its own (`key`) when exclusions or a shared LOG need one. */
  const emit = (compiled: CompiledRule, target: Action, key: string, log: boolean): void => {
    const several = compiled.terms.length > 1;
    if (compiled.exclusions === undefined && !(log && several)) {
      for (const t of compiled.terms) out.push({ match: t, action: target });
      return;
    }
    // A chain of its own: exclusions RETURN first; a LOG matched by several lines is reached by goto, so it logs once.
    const ruleChain = ruleChainName("r", d, key);
    const body = (compiled.exclusions ?? []).map((x) => rule(RETURN, ...x));
    let lineTarget = target;
    if (log && several) {
      const logChain = ruleChainName("l", d, key);
      extra.push({ name: logChain, rules: [rule(target)] });
      lineTarget = goTo(logChain);
    }
    for (const t of compiled.terms) body.push({ match: t, action: lineTarget });
    extra.push({ name: ruleChain, rules: body });
    out.push(rule(jump(ruleChain)));
  };
  rules.forEach((r, index) => {
    // NetworkPolicy is an allow-list: only allow (and log) rules mean anything in that tier.
    if (p.tier === "namespace" && (r.action === "deny" || r.action === "pass")) return;
    // Without the sctp match an SCTP port cannot be tested, so such a rule is rendered so
    // that it fails closed (DESIGN: SCTP without the sctp match): a Deny covers every SCTP
    // packet it might match, an Allow or Log none of them, and a Pass drops those packets
    // (skipping the tier for them could skip a Deny; not passing could reach an Allow).
    const inexact = !sctp && usesSctpPorts(r);
    const dropFirst = inexact && r.action === "pass" ? compiler.compile(r, "wide", "sctp") : undefined;
    const compiled = compiler.compile(r, r.action === "deny" ? "wide" : "narrow");
    if (compiled.terms.length === 0 && !dropFirst?.terms.length) return;
    if (pendingReturn) out.push(pendingReturn); // the previous rule's RETURN, once we know more follows
    if (dropFirst?.terms.length) emit(dropFirst, DROP, `${p.id}|${index}|sctp`, false);
    pendingReturn = undefined;
    if (compiled.terms.length === 0) return;
    emit(compiled, actionTarget(r.action, p, d, index), `${p.id}|${index}`, r.action === "log");
    allows ||= r.action === "allow";
    passes ||= r.action === "pass";
    pendingReturn = r.action === "allow" ? rule(RETURN, markIs(MARK_ACCEPT)) : r.action === "pass" ? rule(RETURN, markIs(MARK_PASS)) : undefined;
  });
  return { rules: out, extra, allows, passes };
}

function actionTarget(a: RuleIR["action"], p: PolicyIR, d: Direction, index: number): Action {
  if (a === "allow") return setMark(MARK_ACCEPT);
  if (a === "pass") return setMark(MARK_PASS);
  if (a === "deny") return DROP;
  return { kind: "log", prefix: logPrefix(p, d, index), limit: { perMinute: LOG_PER_MINUTE, burst: LOG_BURST } };
}

/** `slc-r{i,o}-<hash>` (a rule's own chain) or `slc-l{i,o}-<hash>` (its LOG), from `<policy id>|<rule index>[|part]`. */
function ruleChainName(kind: "r" | "l", d: Direction, key: string): string {
  return `slc-${kind}${d === "ingress" ? "i" : "o"}-${hash(key, 16)}`;
}

interface CompiledRule {
  terms: Match[][];
  exclusions: Match[][] | undefined;
}

interface SetTest {
  name: string;
  dirs: AddrDir[];
  neg: boolean;
}
interface PortTest {
  from: number;
  to: number;
  neg: boolean;
}
interface IcmpTest {
  type: number;
  code: number | undefined;
  neg: boolean;
}

/** A conjunction of tests the compiler can merge and exclude; matchesOf turns it into rule matches. */
interface Conj {
  proto: IpProtocol | undefined;
  /** Print -p even without a port or ICMP test (a named-port set already implies its protocol). */
  showProto: boolean;
  sets: SetTest[];
  sport?: PortTest | undefined;
  dport?: PortTest | undefined;
  icmp?: IcmpTest | undefined;
}

const EVERYTHING: Conj = { proto: undefined, showProto: false, sets: [] };

/** Both conjunctions at once, or undefined when no packet matches both. Source and destination port tests come from different parts, so never collide. */
function merge(a: Conj, b: Conj): Conj | undefined {
  if (a.proto !== undefined && b.proto !== undefined && a.proto !== b.proto) return undefined;
  let icmp = a.icmp ?? b.icmp;
  if (a.icmp && b.icmp) {
    if (a.icmp.type !== b.icmp.type || (a.icmp.code !== undefined && b.icmp.code !== undefined && a.icmp.code !== b.icmp.code)) return undefined;
    icmp = { type: a.icmp.type, code: a.icmp.code ?? b.icmp.code, neg: false };
  }
  return { proto: a.proto ?? b.proto, showProto: a.showProto || b.showProto, sets: [...a.sets, ...b.sets], sport: a.sport ?? b.sport, dport: a.dport ?? b.dport, icmp };
}

/**
 * `t` without the packets of `n` as one conjunction: `t` itself when `n` cannot match
 * inside it, null when `n` covers it, "chain" when that takes more than one negated test.
 */
function exclude(t: Conj, n: Conj): Conj | null | "chain" {
  if (n.proto !== undefined && t.proto !== undefined && n.proto !== t.proto) return t;
  const needsProto = n.proto !== undefined && t.proto === undefined && (n.showProto || n.sport !== undefined || n.dport !== undefined || n.icmp !== undefined);
  const tests = (needsProto ? 1 : 0) + n.sets.length + (n.sport ? 1 : 0) + (n.dport ? 1 : 0) + (n.icmp ? 1 : 0);
  if (tests === 0) return null;
  if (tests > 1 || needsProto) return "chain";
  const set = n.sets[0];
  if (set) return { ...t, sets: [...t.sets, { ...set, neg: true }] };
  for (const k of ["sport", "dport"] as const) {
    const np = n[k];
    if (!np) continue;
    const tp = t[k];
    if (!tp) return { ...t, [k]: { ...np, neg: true } };
    if (tp.neg) return "chain";
    if (np.to < tp.from || np.from > tp.to) return t;
    return np.from <= tp.from && np.to >= tp.to ? null : "chain";
  }
  const ni = n.icmp as IcmpTest;
  if (!t.icmp) return { ...t, icmp: { ...ni, neg: true } };
  if (t.icmp.neg) return "chain";
  if (t.icmp.type !== ni.type || (t.icmp.code !== undefined && ni.code !== undefined && t.icmp.code !== ni.code)) return t;
  return ni.code === undefined || ni.code === t.icmp.code ? null : "chain";
}

const range = (p: PortTest): { from: number; to: number; not?: boolean } => ({ from: p.from, to: p.to, ...(p.neg ? { not: true } : {}) });

/** The rule matches of a conjunction: the protocol (when a test needs it or it is the test), the sets in order, one port match, the ICMP match. */
function matchesOf(m: Conj): Match[] {
  const out: Match[] = [];
  const ports = m.sport !== undefined || m.dport !== undefined;
  if (m.proto !== undefined && (m.showProto || ports || m.icmp !== undefined)) out.push(protocol(m.proto));
  for (const s of m.sets) out.push(inSet(s.name, s.dirs, s.neg));
  if (ports) out.push({ kind: "ports", protocol: m.proto as PortProtocol, ...(m.sport ? { src: range(m.sport) } : {}), ...(m.dport ? { dst: range(m.dport) } : {}) });
  if (m.icmp) {
    const { type, code, neg } = m.icmp;
    out.push({ kind: "icmp", family: m.proto === "icmp" ? 4 : 6, type, ...(code === undefined ? {} : { code }), ...(neg ? { not: true } : {}) });
  }
  return out;
}

/** One IR rule of one policy and direction -> the match lines of its action (and exclusions when it needs its own chain). */
class RuleCompiler {
  private readonly peerDir: "src" | "dst";
  private readonly selfDir: "src" | "dst";

  constructor(
    private readonly p: PolicyIR,
    private readonly d: Direction,
    private readonly sets: SetRegistry,
    private readonly sctp: boolean,
  ) {
    this.peerDir = d === "ingress" ? "src" : "dst";
    this.selfDir = d === "ingress" ? "dst" : "src";
  }

  /**
   * `terms`: one line per (peer x self x port x source port) that can match, "" for
   * everything. `exclusions`: undefined when every exclusion fits into the lines;
   * otherwise lines that must RETURN before the terms are tried (in a chain of the rule's own).
   */
  compile(rule: RuleIR, approx: SctpApprox, onlyProto?: IpProtocol): CompiledRule {
    // An untestable SCTP port as every SCTP packet: in the terms of a wide compile, in the exclusions of a narrow one.
    const wide = approx === "wide";
    const only: Conj = onlyProto === undefined ? EVERYTHING : { ...EVERYTHING, proto: onlyProto, showProto: true };
    const terms: Conj[] = [];
    for (const peer of rule.peers) {
      for (const own of rule.self ? rule.self.peers : [undefined]) {
        for (const port of rule.ports === "all" ? [undefined] : rule.ports) {
          for (const sport of rule.srcPorts ?? [undefined]) {
            // Egress to a named port of pods: that set of (pod address, port) is the peer test as well.
            const namedOfPeer = port?.kind === "named" && this.d === "egress" && peer.kind === "pods";
            const parts = [
              only,
              namedOfPeer ? EVERYTHING : this.peer(peer, this.peerDir),
              own ? this.peer(own, this.selfDir) : EVERYTHING,
              port === undefined ? EVERYTHING : namedOfPeer && port.kind === "named" && peer.kind === "pods" ? this.named(peer.pods, port.name, port.protocol, ["dst", "dst"]) : this.port(port, "dport", wide),
              sport === undefined ? EVERYTHING : this.port(sport, "sport", wide),
            ];
            let m: Conj | undefined = EVERYTHING;
            for (const part of parts) m = m && part && merge(m, part);
            if (m) terms.push(m);
          }
        }
      }
    }
    const exclusions: Conj[] = [];
    const add = (m: Conj | undefined): void => void (m && exclusions.push(m));
    for (const n of rule.notPeers ?? []) add(this.peer(n, this.peerDir));
    for (const n of rule.self?.notPeers ?? []) add(this.peer(n, this.selfDir));
    for (const n of rule.notPorts ?? []) add(this.port(n, "dport", !wide));
    for (const n of rule.notSrcPorts ?? []) add(this.port(n, "sport", !wide));

    const inline: Conj[] = [];
    for (const t of terms) {
      let cur: Conj | null | "chain" = t;
      for (const n of exclusions) {
        cur = exclude(cur, n);
        if (cur === null || cur === "chain") break;
      }
      if (cur === "chain") {
        const lines = exclusions.map(matchesOf);
        // An exclusion of everything leaves nothing to match.
        return lines.some((l) => l.length === 0) ? { terms: [], exclusions: undefined } : { terms: unique(terms.map(matchesOf)), exclusions: unique(lines) };
      }
      if (cur) inline.push(cur);
    }
    return { terms: unique(inline.map(matchesOf)), exclusions: undefined };
  }

  /** The test on one end's address; undefined when it matches nothing in this family. */
  private peer(peer: Peer, dir: "src" | "dst"): Conj | undefined {
    const set = (name: string): Conj => ({ ...EVERYTHING, sets: [{ name, dirs: [dir], neg: false }] });
    switch (peer.kind) {
      case "any":
        return EVERYTHING;
      case "pods":
        return set(this.sets.pods(peer.pods));
      case "ipBlock": {
        const name = this.sets.net(peer.cidr, peer.except);
        return name === undefined ? undefined : name === "" ? EVERYTHING : set(name);
      }
      case "nodes":
        return set(this.sets.nodes(peer.nodes));
      case "networkSets":
        return set(this.sets.networkSets(peer.sets));
      case "allOf": {
        let m: Conj | undefined = EVERYTHING;
        for (const p of peer.peers) {
          const part = this.peer(p, dir);
          m = m && part && merge(m, part);
        }
        return m;
      }
    }
  }

  /**
   * The test of one port spec on the destination or source port; undefined when it matches
   * nothing here. `untestable`: what an SCTP port number stands for without the sctp match,
   * every SCTP packet (true) or none (SctpApprox).
   */
  private port(ps: PortSpec, which: "dport" | "sport", untestable: boolean): Conj | undefined {
    if (ps.kind === "icmp") {
      if (ps.family !== this.sets.family) return undefined;
      const icmp = ps.type === undefined ? undefined : { type: ps.type, code: ps.code, neg: false };
      return { ...EVERYTHING, proto: ps.family === 4 ? "icmp" : "ipv6-icmp", showProto: true, icmp };
    }
    const proto = portProtocol(ps.protocol);
    // -p sctp alone and named ports (ipset) need no sctp match; a port number does.
    if (ps.kind === "range" && ps.protocol === "SCTP" && !this.sctp) return untestable ? { ...EVERYTHING, proto, showProto: true } : undefined;
    if (ps.kind === "protocol") return { ...EVERYTHING, proto, showProto: true };
    if (ps.kind === "range") return { ...EVERYTHING, proto, showProto: true, [which]: { from: ps.from, to: ps.to, neg: false } };
    // A named port is a port of the pod at that end: the selected pod (destination port of
    // ingress, source port of egress) or any pod at all (so never a non-pod).
    const own = (which === "dport") === (this.d === "ingress");
    return this.named(own ? this.p.subject : "all", ps.name, ps.protocol, which === "dport" ? ["dst", "dst"] : ["src", "src"]);
  }

  private named(pods: PodSet | "all", name: string, protocol: Protocol, dirs: AddrDir[]): Conj {
    return { proto: portProtocol(protocol), showProto: false, sets: [{ name: this.sets.namedPorts(pods, name, protocol), dirs, neg: false }] };
  }
}

/** The distinct match lists, in first-seen order. */
function unique(xs: readonly Match[][]): Match[][] {
  const seen = new Map<string, Match[]>();
  for (const x of xs) if (!seen.has(ruleKey(x))) seen.set(ruleKey(x), x);
  return [...seen.values()];
}

const portProtocol = (p: Protocol): PortProtocol => protocolName(p) as PortProtocol;

/**
 * The ipsets the emitted rules reference, members computed once per definition (and, with
 * a memo, kept from render to render while nothing they are computed from changes).
 */
class SetRegistry {
  private readonly byName = new Map<string, IpsetSpec>();
  private readonly byDef = new Map<string, string>();
  private readonly cidrs = new Map<string, Cidr>();
  /** The sets registered while a policy compiles (recording()), so a memo can register them again. */
  private uses: SetUse[] | undefined;

  constructor(
    readonly family: Family,
    private readonly index: EndpointIndex,
    private readonly cluster: ClusterAddresses,
    private readonly memo?: RenderMemo | undefined,
  ) {}

  /** `compile()`'s result with the sets it registered. */
  recording(compile: () => Omit<CompiledPolicy, "sets">): CompiledPolicy {
    const outer = this.uses;
    this.uses = [];
    try {
      const r = compile();
      return { ...r, sets: this.uses };
    } finally {
      this.uses = outer;
    }
  }

  /** Registers a set a kept compiled policy uses. */
  use(u: SetUse): void {
    this.get(u.type, u.def, u.source);
  }

  /** hash:ip of the pods' addresses of this family, cluster-wide. */
  pods(set: PodSet): string {
    return this.get("hash:ip", `pods|${podSetKey(set)}`, { kind: "pods", set });
  }

  private podAddresses(set: PodSet): string[] {
    const out = new Set<string>();
    for (const ep of this.index.pods(set)) for (const a of this.index.addresses(ep, this.family)) out.add(a);
    return [...out];
  }

  /** hash:ip of the addresses of this family of the nodes whose labels match. */
  nodes(sel: LabelSelector): string {
    return this.get("hash:ip", `nodes|${canonicalSelector(sel)}`, { kind: "nodes", selector: sel });
  }

  /** hash:net of the CIDRs of this family of the matching network sets. */
  networkSets(m: NetworkSetMatch): string {
    const def = `nsets|${m.namespaces === "global" ? "global" : namespaceMatchKey(m.namespaces)}|${canonicalSelector(m.selector)}`;
    return this.get("hash:net", def, { kind: "networkSets", match: m });
  }

  /**
   * hash:net of an ipBlock: the CIDR plus its exceptions as `nomatch`. Returns "" when
   * the block is the whole address space without exceptions (no match needed) and
   * undefined when it is of the other family (matches nothing in this table).
   */
  net(cidrText: string, except: readonly string[]): string | undefined {
    const c = this.cidr(cidrText);
    if (c.family !== this.family) return undefined;
    if (c.prefixLen === 0 && except.length === 0) return "";
    return this.get("hash:net", `net|${cidrText}|${except.join(",")}`, { kind: "net", cidr: cidrText, except });
  }

  /** The members of an ipBlock's set. */
  private netBlockMembers(cidrText: string, except: readonly string[]): string[] {
    const excepts = except.map((e) => netMember(this.cidr(e)));
    // A /0 block is held as two /1 halves: an exception equal to a half removes it (ipset
    // cannot hold one element both with and without nomatch; the plan refuses the set).
    return [...netMembers([this.cidr(cidrText)]).filter((m) => !excepts.includes(m)), ...excepts.map((e) => ipsetNetMember(e, true))];
  }

  /** hash:ip,port of `<ip>,<proto>:<port>` for the named container port of the pods ("all": every pod). */
  namedPorts(set: PodSet | "all", name: string, protocol: Protocol): string {
    const def = `port|${set === "all" ? "all" : podSetKey(set)}|${name}|${protocol}`;
    return this.get("hash:ip,port", def, { kind: "ports", set, name, protocol });
  }

  private namedPortMembers(set: PodSet | "all", name: string, protocol: Protocol): string[] {
    const out = new Set<string>();
    for (const ep of set === "all" ? this.index.allPods() : this.index.pods(set)) {
      const ports = ep.ports.filter((cp) => cp.name === name && cp.protocol === protocol);
      if (ports.length === 0) continue;
      for (const a of this.index.addresses(ep, this.family)) for (const cp of ports) out.add(ipsetPortMember(a, protocolName(protocol), cp.containerPort));
    }
    return [...out];
  }

  /** Members of a set from its source, for this snapshot. */
  private membersOf(source: SetSource): string[] {
    switch (source.kind) {
      case "pods":
        return this.podAddresses(source.set);
      case "ports":
        return this.namedPortMembers(source.set, source.name, source.protocol);
      case "nodes":
        return this.cluster.nodeAddresses(source.selector).filter((a) => a.includes(":") === (this.family === 6));
      case "networkSets":
        return netMembers(this.cluster.networkSetNets(source.match).map((n) => this.cidr(n)).filter((c) => c.family === this.family));
      case "net":
        return this.netBlockMembers(source.cidr, source.except);
    }
  }

  specs(): IpsetSpec[] {
    return [...this.byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private cidr(text: string): Cidr {
    let c = this.cidrs.get(text);
    if (!c) {
      c = parseCidr(text);
      this.cidrs.set(text, c);
    }
    return c;
  }

  private get(type: IpsetType, def: string, source: SetSource): string {
    this.uses?.push({ type, def, source });
    const known = this.byDef.get(def);
    if (known !== undefined) return known;
    const make = (): IpsetSpec => {
      const name = ipsetName(this.family, type, def);
      return { name, type, family: this.family, members: [...new Set(this.membersOf(source))].sort() };
    };
    const spec = this.memo ? this.memo.set(def, source, make) : make();
    this.byDef.set(def, spec.name);
    this.byName.set(spec.name, spec);
    return spec.name;
  }
}

/** hash:net members of CIDRs; ipset refuses /0, so two /1 halves cover the same space. */
function netMembers(cidrs: readonly Cidr[]): string[] {
  return cidrs.flatMap((c) => (c.prefixLen === 0 ? [`${formatIp({ family: c.family, value: 0n })}/1`, `${formatIp({ family: c.family, value: 1n << BigInt(bitsOf(c.family) - 1) })}/1`] : [netMember(c)]));
}

/** A hash:net member as `ipset save` prints it: a host prefix is the bare address. */
function netMember(c: Cidr): string {
  return c.prefixLen === bitsOf(c.family) ? formatIp({ family: c.family, value: c.ip }) : formatCidr(c);
}
