/**
 * Policy IR -> iptables chains + ipsets (filter table, one family), Felix's layout:
 *
 *   SLUICE-FORWARD: -i slc+ -j slc-from-wl         (egress of local pods)
 *                   -o slc+ -j slc-to-wl           (ingress of local pods)
 *                   ... then the lead's cluster accept rules
 *   SLUICE-INPUT:   [IPv6: ICMPv6 neighbour discovery / MLD from pods accepted]
 *                   -i slc+ -j slc-from-wl         (pod -> this host: egress policy)
 *   SLUICE-OUTPUT:  -o slc+ -j ACCEPT              (this host -> local pods: always allowed)
 *
 *   slc-from-wl:    -i <iface> -g slc-fw-<iface>   per local pod, then -j DROP (fail closed)
 *   slc-to-wl:      -o <iface> -g slc-tw-<iface>   per local pod, then -j DROP
 *   slc-fw-<iface>: conntrack; anti-spoofing; clear marks; [admin tier]; namespace tier:
 *                   per selecting policy `-j slc-po-<hash>` + `-m mark --mark ACCEPT -j RETURN`,
 *                   then -j DROP when isolated, else [baseline tier] -j RETURN
 *   slc-tw-<iface>: the same without anti-spoofing, with slc-pi-<hash>
 *   slc-pi/po-<hash>: one chain per policy and direction, shared by all local pods it selects;
 *                   each allowed (peer x port) sets the accept bit; a RETURN on the accept bit
 *                   follows each rule.
 *
 * Allowed traffic RETURNs to the caller (SLUICE-FORWARD then reaches the next dispatch or
 * the accept rules); denied traffic is DROPped inside. The dispatch chains `goto` the
 * endpoint chain, so a RETURN there goes straight back to SLUICE-FORWARD / SLUICE-INPUT.
 * In SLUICE-INPUT the dispatch is a jump (not a goto), so an allowed packet continues in
 * SLUICE-INPUT and then INPUT, whatever rules come after ours.
 *
 * Peers are ipsets, never per-pod rules: the rule count grows with policies + local pods,
 * and membership changes only touch sets. Set names hash the set's definition, so they
 * are stable across runs and nodes, and a name's type never changes.
 */
import { createHash } from "node:crypto";
import type { Protocol } from "../model/endpoint.js";
import { HOST_IFACE_PREFIX, type PodEndpoint } from "../model/endpoint.js";
import { type Cidr, type Family, formatCidr, formatIp, parseCidr, bitsOf } from "../model/ip.js";
import { EndpointIndex } from "../policy/endpointIndex.js";
import { type Direction, type Peer, type PodSet, type PolicyIR, type PortSpec, type RuleIR, comparePolicies, podSetKey, protocolName, rulesOf } from "../policy/ir.js";
import { networkPolicyToIr } from "../policy/networkPolicy.js";
import type { NetworkSetInfo, NodeInfo, PolicyModel } from "../policy/model.js";
import type { IpsetSpec, IpsetType } from "./ipsetSpec.js";
import { IPSET_NAME_MAX } from "./ipsetSpec.js";
import type { PolicyRender, PolicyRenderInput } from "./policyContract.js";
import type { ChainSpec } from "./ruleset.js";

export const CHAIN_FROM_WL = "slc-from-wl";
export const CHAIN_TO_WL = "slc-to-wl";
export const CHAIN_NAME_MAX = 28;

/** Set by a policy chain that allows the packet. */
export const MARK_ACCEPT = "0x10000/0x10000";
/** Set by an admin-tier Pass (issue 5). */
export const MARK_PASS = "0x20000/0x20000";
/** Clears both policy bits, leaving everyone else's mark bits alone. */
export const MARK_CLEAR = "0x0/0x30000";
/**
 * Set on packets from pods in SLUICE-INPUT (and cleared in SLUICE-FORWARD): the egress
 * chain lets a packet to this node through whatever the pod's policy says, because
 * traffic to and from the node where a pod runs is always allowed.
 */
export const MARK_TO_HOST = "0x40000/0x40000";
export const MARK_TO_HOST_CLEAR = "0x0/0x40000";

const IFACE_MATCH = `${HOST_IFACE_PREFIX}+`;
/** What the kernel accepts as a link name and iptables as an exact `-i`/`-o` match (no `+`). */
const IFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;
const CT_ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT";
const CT_INVALID = "-m conntrack --ctstate INVALID -j DROP";
/** ICMPv6 a pod must send to its host for IPv6 to work at all: MLD 130-132, RS 133, NS 135, NA 136. */
const ICMPV6_HOST_TYPES = [130, 131, 132, 133, 135, 136];

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
}

/** The whole policy model (every tier) -> PolicyRender: the entry point the agent calls. */
export function renderPolicyModel(input: PolicyModelRenderInput): PolicyRender {
  const { model } = input;
  return renderPolicyIr({ family: input.family, nodeName: input.nodeName, sctpSupported: input.sctpSupported, endpoints: model.endpoints, namespaces: model.namespaces, nodes: model.nodes, networkSets: model.networkSets, policies: model.policies });
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
}

/** The IR from every source (NetworkPolicy now, the admin/baseline tiers later) -> PolicyRender. */
export function renderPolicyIr(input: PolicyIrRenderInput): PolicyRender {
  const { family } = input;
  // An endpoint whose Pod or Namespace object is missing has unknown labels: it must not
  // match any selector (as a peer it would be let in by NotIn/DoesNotExist selectors, as a
  // subject it would escape label-selected isolation), so it is left out of the index and,
  // when local, isolated both ways below (fail closed).
  const known = input.endpoints.filter((ep) => ep.metadataKnown !== false);
  const index = new EndpointIndex(known, input.namespaces);
  const sets = new SetRegistry(family, index);

  // Local endpoints with a usable interface name, one per interface, sorted by interface.
  // A malformed name would make iptables-restore reject the whole table, so such an
  // endpoint gets no chain: its traffic meets the dispatch chains' final DROP.
  const byIface = new Map<string, PodEndpoint>();
  for (const ep of input.endpoints) {
    if (ep.node !== input.nodeName || !IFACE_NAME.test(ep.hostIface) || byIface.has(ep.hostIface)) continue;
    byIface.set(ep.hostIface, ep);
  }
  const locals = [...byIface.values()].sort((a, b) => (a.hostIface < b.hostIface ? -1 : a.hostIface > b.hostIface ? 1 : 0));
  const localSet = new Set(locals);

  // Which policies (in evaluation order) select each local endpoint, per direction.
  const selecting = new Map<PodEndpoint, { ingress: string[]; egress: string[] }>(locals.map((ep) => [ep, { ingress: [], egress: [] }]));
  const policyChains: ChainSpec[] = [];
  for (const p of [...input.policies].sort(comparePolicies)) {
    if (p.tier !== "namespace") continue; // admin/baseline tiers: issue 5
    const selected = index.pods(p.subject).filter((ep) => localSet.has(ep));
    if (selected.length === 0) continue;
    for (const d of ["ingress", "egress"] as const) {
      const rules = rulesOf(p, d);
      if (rules === undefined) continue;
      const name = policyChainName(d, p.id);
      for (const ep of selected) selecting.get(ep)?.[d].push(name);
      policyChains.push({ name, rules: renderPolicyRules(p, d, rules, sets, input.sctpSupported) });
    }
  }

  const chains: ChainSpec[] = [
    { name: CHAIN_FROM_WL, rules: [...locals.map((ep) => `-i ${ep.hostIface} -g ${endpointChainName("egress", ep.hostIface)}`), "-j DROP"] },
    { name: CHAIN_TO_WL, rules: [...locals.map((ep) => `-o ${ep.hostIface} -g ${endpointChainName("ingress", ep.hostIface)}`), "-j DROP"] },
  ];
  for (const ep of locals) {
    const sel = selecting.get(ep) ?? { ingress: [], egress: [] };
    const own = index.addresses(ep, family);
    const unknown = ep.metadataKnown === false;
    chains.push({ name: endpointChainName("egress", ep.hostIface), rules: endpointRules("egress", sel.egress, own, family, unknown) });
    chains.push({ name: endpointChainName("ingress", ep.hostIface), rules: endpointRules("ingress", sel.ingress, own, family, unknown) });
  }
  chains.push(...policyChains.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));

  const icmp = family === 6 ? ICMPV6_HOST_TYPES.map((t) => `-i ${IFACE_MATCH} -p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`) : [];
  return {
    forwardRules: [`-i ${IFACE_MATCH} -j MARK --set-xmark ${MARK_TO_HOST_CLEAR}`, `-i ${IFACE_MATCH} -j ${CHAIN_FROM_WL}`, `-o ${IFACE_MATCH} -j ${CHAIN_TO_WL}`],
    inputRules: [...icmp, `-i ${IFACE_MATCH} -j MARK --set-xmark ${MARK_TO_HOST}`, `-i ${IFACE_MATCH} -j ${CHAIN_FROM_WL}`],
    outputRules: [`-o ${IFACE_MATCH} -j ACCEPT`],
    chains,
    ipsets: sets.specs(),
  };
}

/**
 * One local endpoint's chain for one direction. `namespaceTier`: the chains of the
 * NetworkPolicies selecting it, in order; `addrs`: its own addresses (egress
 * anti-spoofing, and a pod is never cut off from itself); `unknown`: its Pod or Namespace
 * object is missing, so it is isolated both ways until its labels are known.
 */
function endpointRules(d: Direction, namespaceTier: readonly string[], addrs: readonly string[], family: Family, unknown = false): string[] {
  const rules = [CT_ESTABLISHED, CT_INVALID];
  const host = bitsOf(family);
  if (d === "egress") {
    if (addrs.length === 0) {
      // No address of this family: nothing it sends in this family can be genuine.
      rules.push("-j DROP");
      return rules;
    }
    if (addrs.length === 1) rules.push(`! -s ${addrs[0] as string}/${host} -j DROP`);
    else {
      // Several addresses (not something Kubernetes does, but a CNI record may): flag any, drop the rest.
      rules.push(`-j MARK --set-xmark ${MARK_CLEAR}`);
      for (const a of addrs) rules.push(`-s ${a}/${host} -j MARK --set-xmark ${MARK_ACCEPT}`);
      rules.push(`-m mark --mark 0x0/0x10000 -j DROP`);
    }
    // Traffic to the node the pod runs on is always allowed (SLUICE-INPUT marked it).
    rules.push(`-m mark --mark ${MARK_TO_HOST} -j RETURN`);
  }
  // A pod cannot block access to itself (e.g. through a Service that hairpins back to it).
  for (const a of addrs) rules.push(d === "egress" ? `-d ${a}/${host} -j RETURN` : `-s ${a}/${host} -j RETURN`);
  rules.push(`-j MARK --set-xmark ${MARK_CLEAR}`);
  if (unknown) {
    rules.push("-j DROP"); // labels unknown: fail closed
    return rules;
  }
  // Admin tier (ClusterNetworkPolicy tier Admin, GlobalNetworkPolicy): issue 5, goes here.
  if (namespaceTier.length > 0) {
    for (const chain of namespaceTier) rules.push(`-j ${chain}`, `-m mark --mark ${MARK_ACCEPT} -j RETURN`);
    rules.push("-j DROP"); // isolated: nothing allowed it
    return rules;
  }
  // Baseline tier (ClusterNetworkPolicy tier Baseline): issue 5, goes here.
  rules.push("-j RETURN"); // not isolated: default allow
  return rules;
}

/** The body of slc-pi-/slc-po-<hash>. */
function renderPolicyRules(p: PolicyIR, d: Direction, rules: readonly RuleIR[], sets: SetRegistry, sctp: boolean): string[] {
  const out: string[] = [];
  let pendingReturn: string | undefined;
  for (const rule of rules) {
    const matches = new Set<string>();
    for (const peer of rule.peers) {
      for (const port of rule.ports === "all" ? [undefined] : rule.ports) {
        const m = ruleMatch(p, d, peer, port, sets, sctp);
        if (m !== undefined) matches.add(m);
      }
    }
    if (matches.size === 0) continue;
    const [target, done] = actionTargets(rule.action);
    if (pendingReturn) out.push(pendingReturn); // the previous rule's RETURN, once we know more follows
    for (const m of matches) out.push(m ? `${m} ${target}` : target);
    pendingReturn = done;
  }
  return out;

  function actionTargets(a: RuleIR["action"]): [string, string | undefined] {
    if (a === "allow") return [`-j MARK --set-xmark ${MARK_ACCEPT}`, `-m mark --mark ${MARK_ACCEPT} -j RETURN`];
    if (a === "pass") return [`-j MARK --set-xmark ${MARK_PASS}`, `-m mark --mark ${MARK_PASS} -j RETURN`];
    return ["-j DROP", undefined];
  }
}

/**
 * The match part of one (peer x port) rule, "" for "everything", undefined when it can
 * match nothing here (an ipBlock of the other family, SCTP without kernel support).
 */
function ruleMatch(p: PolicyIR, d: Direction, peer: Peer, port: PortSpec | undefined, sets: SetRegistry, sctp: boolean): string | undefined {
  const dir = d === "ingress" ? "src" : "dst";
  if (port?.kind === "icmp") return undefined; // not rendered yet (the tiers work)
  if (port && port.protocol === "SCTP" && !sctp) return undefined;

  if (port?.kind === "named") {
    // A named port is the DESTINATION pod's port: for ingress the selected pod, for egress
    // the peer pod (any pod at all for ipBlock/any peers, so non-pods never match).
    if (d === "ingress") {
      const peerMatch = peerSetMatch(peer, dir, sets);
      if (peerMatch === undefined) return undefined;
      return join(peerMatch, `-m set --match-set ${sets.namedPorts(p.subject, port.name, port.protocol)} dst,dst`);
    }
    if (peer.kind === "pods") return `-m set --match-set ${sets.namedPorts(peer.pods, port.name, port.protocol)} dst,dst`;
    const peerMatch = peerSetMatch(peer, dir, sets);
    if (peerMatch === undefined) return undefined;
    return join(peerMatch, `-m set --match-set ${sets.namedPorts("all", port.name, port.protocol)} dst,dst`);
  }

  const peerMatch = peerSetMatch(peer, dir, sets);
  if (peerMatch === undefined) return undefined;
  if (!port) return peerMatch;
  // iptables-save's order: -p first, then the matches in order.
  const proto = protocolName(port.protocol);
  const portMatch = port.kind === "range" ? `-m ${proto} --dport ${port.from === port.to ? port.from : `${port.from}:${port.to}`}` : "";
  return join(`-p ${proto}`, peerMatch, portMatch);
}

function peerSetMatch(peer: Peer, dir: "src" | "dst", sets: SetRegistry): string | undefined {
  if (peer.kind === "any") return "";
  if (peer.kind === "pods") return `-m set --match-set ${sets.pods(peer.pods)} ${dir}`;
  if (peer.kind !== "ipBlock") return undefined; // nodes / networkSets: not rendered yet (the tiers work)
  const name = sets.net(peer.cidr, peer.except);
  if (name === undefined) return undefined; // the other family: matches nothing here
  return name === "" ? "" : `-m set --match-set ${name} ${dir}`;
}

const join = (...parts: string[]): string => parts.filter((s) => s !== "").join(" ");

/** The ipsets the emitted rules reference, members computed once per definition. */
class SetRegistry {
  private readonly byName = new Map<string, IpsetSpec>();
  private readonly byDef = new Map<string, string>();
  private readonly cidrs = new Map<string, Cidr>();

  constructor(
    private readonly family: Family,
    private readonly index: EndpointIndex,
  ) {}

  /** hash:ip of the pods' addresses of this family, cluster-wide. */
  pods(set: PodSet): string {
    return this.get("hash:ip", `pods|${podSetKey(set)}`, () => {
      const out = new Set<string>();
      for (const ep of this.index.pods(set)) for (const a of this.index.addresses(ep, this.family)) out.add(a);
      return [...out];
    });
  }

  /**
   * hash:net of an ipBlock: the CIDR plus its exceptions as `nomatch`. Returns "" when
   * the block is the whole address space without exceptions (no match needed) and
   * undefined when it is of the other family (matches nothing in this table).
   */
  net(cidrText: string, except: readonly string[]): string | undefined {
    let c = this.cidrs.get(cidrText);
    if (!c) {
      c = parseCidr(cidrText);
      this.cidrs.set(cidrText, c);
    }
    if (c.family !== this.family) return undefined;
    if (c.prefixLen === 0 && except.length === 0) return "";
    return this.get("hash:net", `net|${cidrText}|${except.join(",")}`, () => {
      // ipset refuses /0: two halves cover the same space.
      const whole = c.prefixLen === 0 ? [`${formatIp({ family: c.family, value: 0n })}/1`, `${formatIp({ family: c.family, value: 1n << BigInt(bitsOf(c.family) - 1) })}/1`] : [cidrText];
      return [...whole.map(netMember), ...except.map((e) => `${netMember(e)} nomatch`)];
    });
  }

  /** hash:ip,port of `<ip>,<proto>:<port>` for the named container port of the pods ("all": every pod). */
  namedPorts(set: PodSet | "all", name: string, protocol: Protocol): string {
    const def = `port|${set === "all" ? "all" : podSetKey(set)}|${name}|${protocol}`;
    return this.get("hash:ip,port", def, () => {
      const out = new Set<string>();
      for (const ep of set === "all" ? this.index.allPods() : this.index.pods(set)) {
        const ports = ep.ports.filter((cp) => cp.name === name && cp.protocol === protocol);
        if (ports.length === 0) continue;
        for (const a of this.index.addresses(ep, this.family)) for (const cp of ports) out.add(`${a},${protocolName(protocol)}:${cp.containerPort}`);
      }
      return [...out];
    });
  }

  specs(): IpsetSpec[] {
    return [...this.byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private get(type: IpsetType, def: string, members: () => string[]): string {
    const known = this.byDef.get(def);
    if (known !== undefined) return known;
    const name = ipsetName(this.family, type, def);
    this.byDef.set(def, name);
    this.byName.set(name, { name, type, family: this.family, members: members().sort() });
    return name;
  }
}

/** A hash:net member as `ipset save` prints it: a host prefix is the bare address. */
function netMember(cidrText: string): string {
  const c = parseCidr(cidrText);
  return c.prefixLen === bitsOf(c.family) ? formatIp({ family: c.family, value: c.ip }) : formatCidr(c);
}
