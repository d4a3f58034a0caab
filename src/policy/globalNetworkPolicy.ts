/**
 * Sluice's GlobalNetworkPolicy (sluice.dev/v1) -> policy IR, with Calico's meaning of
 * the fields:
 *
 * - admin tier, after every ClusterNetworkPolicy: priority GNP_PRIORITY_BASE + `order`;
 *   a policy without `order` comes after every ordered one (priority GNP_UNORDERED_PRIORITY),
 *   equal orders by name (id `gnp:<name>`);
 * - subject: pods matching `selector` (absent: all) in the namespaces matching
 *   `namespaceSelector` (absent: all);
 * - directions: gnpTypes() (Calico's default). Rules run in order; Allow / Deny end
 *   evaluation, Pass skips the rest of the admin tier, Log logs and goes on. Unlike Calico,
 *   traffic that no rule matches is not dropped at the end of the tier: it goes on to the
 *   namespace tier, as for an Admin ClusterNetworkPolicy (buildPolicyModel warns about a
 *   direction with no rules, which therefore does nothing);
 * - an entity rule (`source` / `destination`): `selector`, `namespaceSelector` and `nets`
 *   must all match (an `allOf` peer when nets meet a selector); `notNets` -> notPeers;
 *   `ports` / `notPorts` of the destination -> ports / notPorts, of the source ->
 *   srcPorts / notSrcPorts. The other end of the connection is the ingress rule's
 *   `source` and the egress rule's `destination`; the other side restricts the selected
 *   pod itself (`self`);
 * - `selector` / `namespaceSelector` match pods AND network sets: with a
 *   `namespaceSelector`, pods and NetworkSets of those namespaces; without one, pods of
 *   every namespace and GlobalNetworkSets. (Kubernetes NetworkPolicy and
 *   ClusterNetworkPolicy peers select pods only.)
 * - `protocol` TCP/UDP/SCTP with no ports = every port of it; ICMP / ICMPv6 (with `icmp`
 *   type and code when given) = an icmp port spec of family 4 / 6; no protocol = all.
 */
import type { EntityRule, GlobalNetworkPolicyObject, GnpPort, GnpProtocol, GnpRule } from "../config/policySchemas.js";
import { MAX_GNP_ORDER, gnpTypes, parseGnpPort } from "../config/policySchemas.js";
import type { Protocol } from "../model/endpoint.js";
import { podsOfNamespaces, ruleLabel } from "./clusterNetworkPolicy.js";
import type { Direction, NamespaceMatch, Peer, PolicyIR, PortSpec, RuleAction, RuleIR, SelfMatch } from "./ir.js";
import { canonicalCidr } from "./networkPolicy.js";
import { normalizeSelector } from "./selectors.js";

/** GNPs come after every ClusterNetworkPolicy (priorities 0..1000) in the admin tier. */
export const GNP_PRIORITY_BASE = 1_000_000;
/** Where a GNP without `order` sorts: after every ordered GNP. */
export const GNP_UNORDERED_PRIORITY = GNP_PRIORITY_BASE + MAX_GNP_ORDER + 1;

export const globalNetworkPolicyId = (name: string): string => `gnp:${name}`;

const ACTIONS: Record<GnpRule["action"], RuleAction> = { Allow: "allow", Deny: "deny", Pass: "pass", Log: "log" };

export function globalNetworkPolicyToIr(g: GlobalNetworkPolicyObject): PolicyIR {
  const s = g.spec;
  const types = gnpTypes(g);
  const subjectNs = podsOfNamespaces(s.namespaceSelector ?? {});
  return {
    id: globalNetworkPolicyId(g.metadata.name),
    tier: "admin",
    priority: s.order === undefined ? GNP_UNORDERED_PRIORITY : GNP_PRIORITY_BASE + s.order,
    subject: { namespaces: subjectNs.namespaces, pods: normalizeSelector(s.selector) },
    ingress: types.ingress ? (s.ingress ?? []).map((r, i) => translateRule("ingress", r, i)) : undefined,
    egress: types.egress ? (s.egress ?? []).map((r, i) => translateRule("egress", r, i)) : undefined,
    origin: { kind: "GlobalNetworkPolicy", name: g.metadata.name },
  };
}

function translateRule(d: Direction, r: GnpRule, index: number): RuleIR {
  const other = d === "ingress" ? r.source : r.destination;
  const own = d === "ingress" ? r.destination : r.source;
  const out: RuleIR = { action: ACTIONS[r.action], label: ruleLabel(r.name, index), peers: entityPeers(other) ?? [{ kind: "any" }], ports: destinationPorts(r) };
  const notPeers = notNets(other);
  if (notPeers) out.notPeers = notPeers;
  const notPorts = portList(r.protocol, r.destination?.notPorts);
  if (notPorts) out.notPorts = notPorts;
  const srcPorts = portList(r.protocol, r.source?.ports);
  if (srcPorts) out.srcPorts = srcPorts;
  const notSrcPorts = portList(r.protocol, r.source?.notPorts);
  if (notSrcPorts) out.notSrcPorts = notSrcPorts;
  const self = selfMatch(own);
  if (self) out.self = self;
  return out;
}

/** The peers an entity rule's positive fields match (ANDed), or undefined when it has none (anything). */
function entityPeers(e: EntityRule | undefined): Peer[] | undefined {
  if (!e) return undefined;
  const endpoints = endpointPeers(e);
  const nets = netPeers(e.nets);
  if (endpoints && nets) return endpoints.flatMap((a) => nets.map((b): Peer => ({ kind: "allOf", peers: [a, b] })));
  return endpoints ?? nets;
}

/** Pods and network sets a selector / namespaceSelector pair matches. */
function endpointPeers(e: EntityRule): Peer[] | undefined {
  if (e.selector === undefined && e.namespaceSelector === undefined) return undefined;
  const selector = normalizeSelector(e.selector);
  if (e.namespaceSelector !== undefined) {
    const namespaces: NamespaceMatch = { kind: "selector", selector: normalizeSelector(e.namespaceSelector) };
    return [
      { kind: "pods", pods: { namespaces, pods: selector } },
      { kind: "networkSets", sets: { namespaces, selector } },
    ];
  }
  return [
    { kind: "pods", pods: { namespaces: { kind: "selector", selector: {} }, pods: selector } },
    { kind: "networkSets", sets: { namespaces: "global", selector } },
  ];
}

function netPeers(nets: string[] | undefined): Peer[] | undefined {
  if (!nets || nets.length === 0) return undefined;
  return [...new Set(nets.map(canonicalCidr))].map((cidr) => ({ kind: "ipBlock", cidr, except: [] }));
}

const notNets = (e: EntityRule | undefined): Peer[] | undefined => netPeers(e?.notNets);

function selfMatch(e: EntityRule | undefined): SelfMatch | undefined {
  if (!e) return undefined;
  const peers = entityPeers(e);
  const notPeers = notNets(e);
  if (!peers && !notPeers) return undefined;
  return { peers: peers ?? [{ kind: "any" }], notPeers: notPeers ?? [] };
}

function destinationPorts(r: GnpRule): PortSpec[] | "all" {
  const listed = portList(r.protocol, r.destination?.ports);
  if (listed) return listed;
  switch (r.protocol) {
    case undefined:
      return "all";
    case "ICMP":
    case "ICMPv6":
      return [{ kind: "icmp", family: r.protocol === "ICMP" ? 4 : 6, type: r.icmp?.type, code: r.icmp?.code }];
    default:
      return [{ kind: "protocol", protocol: r.protocol }];
  }
}

/** Calico ports (number, "start:end", name) of a TCP/UDP/SCTP rule; undefined when none are listed. */
function portList(protocol: GnpProtocol | undefined, ports: GnpPort[] | undefined): PortSpec[] | undefined {
  if (!ports || ports.length === 0 || protocol === undefined || protocol === "ICMP" || protocol === "ICMPv6") return undefined;
  const p: Protocol = protocol;
  return ports.map((port): PortSpec => {
    const r = parseGnpPort(port);
    return "name" in r ? { kind: "named", protocol: p, name: r.name } : { kind: "range", protocol: p, ...r };
  });
}

/** What an operator should know about a GNP (a direction that applies but has no rule does nothing). */
export function globalNetworkPolicyNotes(g: GlobalNetworkPolicyObject): string[] {
  const t = gnpTypes(g);
  const out: string[] = [];
  for (const d of ["ingress", "egress"] as const) {
    if (t[d] && (g.spec[d]?.length ?? 0) === 0) out.push(`GlobalNetworkPolicy ${g.metadata.name} applies to ${d === "ingress" ? "Ingress" : "Egress"} but has no ${d} rules: in Sluice's Admin tier unmatched traffic goes on to NetworkPolicy (no end-of-tier deny as in Calico), so this does nothing`);
  }
  return out;
}
