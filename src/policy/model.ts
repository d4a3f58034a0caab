/**
 * The policy model: everything the renderer and the evaluator (and so `sluicectl explain`)
 * need, built by one pure function from what a datastore holds. The agent (etcd or
 * Kubernetes datastore) and the CLI both go through buildPolicyModel, so what explain
 * says is what the agent programs.
 *
 * Fail closed: a policy object the datastore holds but cannot read (`refused`, with no
 * last good version) was written to restrict something, so a stand-in takes its place:
 * - a NetworkPolicy: deny-all of its namespace, both ways (namespace tier);
 * - a ClusterNetworkPolicy or GlobalNetworkPolicy: deny-all of every pod, both ways, in
 *   the admin tier before every other policy (STAND_IN_PRIORITY), with a warning. Its
 *   subject is unknown, so nothing narrower is safe.
 * Other refused objects (a NetworkSet, a Node, ...) only warn: what they would add to a
 * peer is missing until they are fixed.
 *
 * Every policy is deduplicated and held to MAX_POLICY_TERMS (policyBudget.ts): one that
 * would expand to more rule terms fails closed by itself, with a warning.
 */
import type { KubeObject } from "../config/resourceKinds.js";
import type { NetworkPolicyObject } from "../config/k8sSchemas.js";
import type { ClusterNetworkPolicyObject, GlobalNetworkPolicyObject, GlobalNetworkSetObject, NetworkSetObject, NodeObject } from "../config/policySchemas.js";
import type { RefusedObject } from "../model/policySnapshot.js";
import type { NamespaceInfo, PodEndpoint } from "../model/endpoint.js";
import { formatIp, parseIp } from "../model/ip.js";
import { clusterNetworkPolicyId, clusterNetworkPolicyNotes, clusterNetworkPolicyToIr } from "./clusterNetworkPolicy.js";
import { EndpointIndex } from "./endpointIndex.js";
import { globalNetworkPolicyId, globalNetworkPolicyNotes, globalNetworkPolicyToIr } from "./globalNetworkPolicy.js";
import { type PolicyIR, type RuleIR, podSetKey } from "./ir.js";
import { canonicalCidr, networkPolicyToIr } from "./networkPolicy.js";
import { boundPolicy } from "./policyBudget.js";
import type { Labels } from "./selectors.js";

/** A node as policy sees it (ClusterNetworkPolicy `nodes` peers). */
export interface NodeInfo {
  name: string;
  labels: Labels;
  /** Its addresses (InternalIP / ExternalIP), plain text, either family. */
  addresses: string[];
}

/** A NetworkSet (namespace set) or GlobalNetworkSet (namespace undefined). */
export interface NetworkSetInfo {
  namespace: string | undefined;
  name: string;
  labels: Labels;
  /** Canonical CIDR text, either family. */
  nets: string[];
}

export interface PolicyModel {
  endpoints: PodEndpoint[];
  namespaces: NamespaceInfo[];
  nodes: NodeInfo[];
  networkSets: NetworkSetInfo[];
  /** Every policy of every tier, in no particular order (comparePolicies orders them). */
  policies: PolicyIR[];
  /** Things an operator should know (e.g. two Admin policies with the same priority); logged by the agent, printed by explain. */
  warnings: string[];
}

/** What a datastore snapshot offers (PolicySnapshot has all of it). */
export interface PolicyModelInput {
  endpoints: PodEndpoint[];
  namespaces: NamespaceInfo[];
  /** The readable NetworkPolicies. */
  networkPolicies: NetworkPolicyObject[];
  /** Every registered kind's objects by kind name. */
  objects: Readonly<Record<string, readonly KubeObject[]>>;
  /** Stored objects that cannot be read and have no last good version: policies among them get fail-closed stand-ins. */
  refused?: readonly RefusedObject[] | undefined;
}

/** The admin-tier priority of the stand-in for an unreadable cluster-wide policy: before every CNP (0..1000) and GNP. */
export const STAND_IN_PRIORITY = -1;
/** How many overlapping pairs (and policies) one equal-priority warning names. */
const MAX_NAMED = 10;

const objectsOf = <T extends KubeObject>(input: PolicyModelInput, kind: string): readonly T[] => (input.objects[kind] ?? []) as readonly T[];
const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Pure: datastore snapshot -> policy model. */
/**
 * Each policy object's bounded IR, by object identity: a caller that keeps unchanged
 * objects from one model to the next (the render thread's mirror) translates only the
 * changed ones, and the IR objects it gets back are the same ones, which the render memo
 * then finds by identity too.
 */
export class PolicyIrMemo {
  private readonly byObject = new WeakMap<object, ReturnType<typeof boundPolicy>>();

  bound<T extends object>(o: T, toIr: (o: T) => PolicyIR): ReturnType<typeof boundPolicy> {
    let hit = this.byObject.get(o);
    if (!hit) {
      hit = boundPolicy(toIr(o));
      this.byObject.set(o, hit);
    }
    return hit;
  }
}

export function buildPolicyModel(input: PolicyModelInput, memo?: PolicyIrMemo): PolicyModel {
  const warnings: string[] = [];
  const cnps = objectsOf<ClusterNetworkPolicyObject>(input, "ClusterNetworkPolicy");
  const gnps = objectsOf<GlobalNetworkPolicyObject>(input, "GlobalNetworkPolicy");
  // Every policy deduplicated and held to its budget (policyBudget.ts): one oversized
  // policy fails closed by itself instead of stalling the render of every other.
  const policies: PolicyIR[] = [];
  const bound = <T extends object>(o: T, toIr: (o: T) => PolicyIR): ReturnType<typeof boundPolicy> => (memo ? memo.bound(o, toIr) : boundPolicy(toIr(o)));
  const all = [...input.networkPolicies.map((o) => bound(o, networkPolicyToIr)), ...cnps.map((o) => bound(o, clusterNetworkPolicyToIr)), ...gnps.map((o) => bound(o, globalNetworkPolicyToIr))];
  for (const b of all) {
    policies.push(b.policy);
    if (b.warning !== undefined) warnings.push(b.warning);
  }
  for (const c of cnps) warnings.push(...clusterNetworkPolicyNotes(c));
  for (const g of gnps) warnings.push(...globalNetworkPolicyNotes(g));

  for (const r of [...(input.refused ?? [])].sort((a, b) => cmp(refusedText(a), refusedText(b)))) {
    const standIn = standInFor(r);
    if (standIn) policies.push(standIn.policy);
    warnings.push(standIn ? standIn.warning : `${refusedText(r)} cannot be read (${r.reason}); ${UNREADABLE[r.kind] ?? "what it would add to policy peers is missing until it is fixed"}`);
  }

  warnings.push(...equalPriorityWarnings(policies, () => new EndpointIndex(input.endpoints.filter((ep) => ep.metadataKnown !== false), input.namespaces)));
  return {
    endpoints: input.endpoints,
    namespaces: input.namespaces,
    nodes: nodesOf(objectsOf<NodeObject>(input, "Node")),
    networkSets: [...objectsOf<NetworkSetObject>(input, "NetworkSet"), ...objectsOf<GlobalNetworkSetObject>(input, "GlobalNetworkSet")].map(networkSetInfo),
    policies,
    warnings,
  };
}

/** What an unreadable object that is not a policy means (the datastore source decides it; see joinEndpoints). */
const UNREADABLE: Readonly<Record<string, string>> = {
  Pod: "its pod's labels are unknown: it matches no selector and is isolated both ways until it is fixed",
  Namespace: "its labels are unknown: its pods match no selector and are isolated both ways until it is fixed",
};

const refusedText = (r: RefusedObject): string => `${r.kind} ${r.namespace !== undefined ? `${r.namespace}/` : ""}${r.name}`;

const DENY_ALL: RuleIR = { action: "deny", label: "stand-in: deny all", peers: [{ kind: "any" }], ports: "all" };

function standInFor(r: RefusedObject): { policy: PolicyIR; warning: string } | undefined {
  const origin = { kind: "StandIn", namespace: r.namespace, name: r.name };
  if (r.kind === "NetworkPolicy" && r.namespace !== undefined) {
    const np: NetworkPolicyObject = { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: r.name, namespace: r.namespace }, spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] } };
    return { policy: { ...networkPolicyToIr(np), origin }, warning: `${refusedText(r)} cannot be read (${r.reason}); every pod of namespace ${r.namespace} is isolated both ways until it is fixed or deleted` };
  }
  const id = r.kind === "ClusterNetworkPolicy" ? clusterNetworkPolicyId(r.name) : r.kind === "GlobalNetworkPolicy" ? globalNetworkPolicyId(r.name) : undefined;
  if (id === undefined) return undefined;
  return {
    policy: { id, tier: "admin", priority: STAND_IN_PRIORITY, subject: { namespaces: { kind: "selector", selector: {} }, pods: {} }, ingress: [DENY_ALL], egress: [DENY_ALL], origin },
    warning: `${refusedText(r)} cannot be read (${r.reason}); every pod is denied all traffic both ways until it is fixed or deleted`,
  };
}

/**
 * Admin-tier ClusterNetworkPolicies with the same priority that select a common pod: the
 * published API leaves their order to the implementation; Sluice orders them by name.
 * One warning per priority, naming the overlapping pairs. Subjects are compared once per
 * distinct pod set, so equal subjects cost nothing.
 */
function equalPriorityWarnings(policies: readonly PolicyIR[], indexOf: () => EndpointIndex): string[] {
  // Built only when two policies share a priority: indexing every pod is most of a model's cost otherwise.
  let built: EndpointIndex | undefined;
  const index = { pods: (set: PolicyIR["subject"]) => (built ??= indexOf()).pods(set) };
  const groups = new Map<number, PolicyIR[]>();
  for (const p of policies) {
    if (p.tier !== "admin" || p.origin?.kind !== "ClusterNetworkPolicy") continue;
    const g = groups.get(p.priority);
    if (g) g.push(p);
    else groups.set(p.priority, [p]);
  }
  const members = new Map<string, ReadonlySet<PodEndpoint>>();
  const podsOf = (p: PolicyIR): ReadonlySet<PodEndpoint> => {
    const key = keyOf(p);
    let hit = members.get(key);
    if (!hit) {
      hit = new Set(index.pods(p.subject));
      members.set(key, hit);
    }
    return hit;
  };
  const keys = new Map<PolicyIR, string>();
  const keyOf = (p: PolicyIR): string => {
    let k = keys.get(p);
    if (k === undefined) keys.set(p, (k = podSetKey(p.subject)));
    return k;
  };
  const overlapMemo = new Map<string, boolean>();
  const overlap = (a: PolicyIR, b: PolicyIR): boolean => {
    const [ka, kb] = [keyOf(a), keyOf(b)].sort(cmp) as [string, string];
    const key = `${ka}\u0000${kb}`;
    let hit = overlapMemo.get(key);
    if (hit === undefined) {
      const [x, y] = [podsOf(a), podsOf(b)];
      const [small, large] = x.size <= y.size ? [x, y] : [y, x];
      hit = false;
      for (const ep of small) {
        if (large.has(ep)) {
          hit = true;
          break;
        }
      }
      overlapMemo.set(key, hit);
    }
    return hit;
  };
  const out: string[] = [];
  for (const [priority, group] of [...groups].sort(([a], [b]) => a - b)) {
    if (group.length < 2) continue;
    const sorted = [...group].sort((a, b) => cmp(a.id, b.id));
    const pairs: string[] = [];
    for (let i = 0; i < sorted.length; i++) for (let j = i + 1; j < sorted.length; j++) if (overlap(sorted[i] as PolicyIR, sorted[j] as PolicyIR)) pairs.push(`${nameOf(sorted[i] as PolicyIR)} and ${nameOf(sorted[j] as PolicyIR)}`);
    if (pairs.length === 0) continue;
    const named = pairs.slice(0, MAX_NAMED).join(", ") + (pairs.length > MAX_NAMED ? ` and ${pairs.length - MAX_NAMED} more pairs` : "");
    const order = sorted.slice(0, MAX_NAMED).map(nameOf).join(", ") + (sorted.length > MAX_NAMED ? `, ... (${sorted.length} policies)` : "");
    out.push(`Admin ClusterNetworkPolicies with the same priority ${priority} select common pods: ${named}; Sluice evaluates them by name (${order}); give them distinct priorities if the order matters`);
  }
  return out;
}

const nameOf = (p: PolicyIR): string => p.origin?.name ?? p.id;

/** Nodes with their InternalIP / ExternalIP addresses (canonical text, de-duplicated, sorted); unparsable addresses are skipped. */
function nodesOf(nodes: readonly NodeObject[]): NodeInfo[] {
  return nodes.map((n) => {
    const addresses = new Set<string>();
    for (const a of n.status?.addresses ?? []) {
      if (a.type !== "InternalIP" && a.type !== "ExternalIP") continue;
      try {
        addresses.add(formatIp(parseIp(a.address)));
      } catch {
        // not an address (the API server would not store it); nothing to match
      }
    }
    return { name: n.metadata.name, labels: n.metadata.labels ?? {}, addresses: [...addresses].sort() };
  });
}

function networkSetInfo(s: NetworkSetObject | GlobalNetworkSetObject): NetworkSetInfo {
  return { namespace: s.kind === "NetworkSet" ? s.metadata.namespace : undefined, name: s.metadata.name, labels: s.metadata.labels ?? {}, nets: [...new Set((s.spec.nets ?? []).map(canonicalCidr))].sort() };
}
