/**
 * What the test believes the cluster holds: namespaces, pods (node, address, labels),
 * policies (as applied YAML documents). The runner keeps it to reset between scenarios
 * and to fill placeholders; the oracle reads it to re-derive expected grids. It never
 * reads anything from the system under test except pod addresses and node subnets.
 */
import { parseAllDocuments } from "yaml";
import { CONTAINER_PORTS, EXTERNAL_HOST, HOME_NODE, NAMESPACES, POD_NAMES, type NamedPort, namespaceLabels, podLabels, splitKey } from "./model.js";
import type { LabelChange, Step } from "./scenarios.js";

export interface PodState {
  key: string;
  namespace: string;
  name: string;
  node: string;
  ip: string;
  labels: Record<string, string>;
  ports: NamedPort[];
}

export interface NamespaceState {
  name: string;
  labels: Record<string, string>;
}

/** The kinds a scenario step may apply and delete. */
export const OBJECT_KINDS = ["NetworkPolicy", "ClusterNetworkPolicy", "GlobalNetworkPolicy", "NetworkSet", "GlobalNetworkSet"] as const;
export type ObjectKind = (typeof OBJECT_KINDS)[number];
const NAMESPACED: readonly ObjectKind[] = ["NetworkPolicy", "NetworkSet"];

/** A policy-related document as the test wrote it (after placeholders). */
export interface PolicyDoc {
  kind: ObjectKind;
  metadata: { name: string; namespace?: string | undefined; labels?: Record<string, string> | undefined };
  spec: Record<string, unknown>;
}

export interface ObjectRef {
  kind: ObjectKind;
  namespace?: string | undefined;
  name: string;
}

/**
 * How steps name objects (Step.delete) and the state keys them: `<namespace>/<name>` for a
 * NetworkPolicy, `<Kind>/<name>` for a cluster-scoped kind, `<Kind>/<namespace>/<name>`
 * for a NetworkSet.
 */
export function objectKey(r: ObjectRef): string {
  if (r.kind === "NetworkPolicy") return `${r.namespace ?? ""}/${r.name}`;
  return r.namespace !== undefined ? `${r.kind}/${r.namespace}/${r.name}` : `${r.kind}/${r.name}`;
}

export function parseObjectKey(key: string): ObjectRef {
  const parts = key.split("/");
  const kind = OBJECT_KINDS.find((k) => k === parts[0]);
  if (kind === undefined && parts.length === 2) return { kind: "NetworkPolicy", namespace: parts[0] as string, name: parts[1] as string };
  if (kind !== undefined && NAMESPACED.includes(kind) && parts.length === 3) return { kind, namespace: parts[1] as string, name: parts[2] as string };
  if (kind !== undefined && !NAMESPACED.includes(kind) && parts.length === 2) return { kind, name: parts[1] as string };
  throw new Error(`object key "${key}" is not <ns>/<networkpolicy>, <Kind>/<name> or <Kind>/<ns>/<name>`);
}

export interface Addresses {
  network: string;
  subnets: Record<string, string>;
  /** Addresses outside the pod network: every node (node-1, ...) and the external host (ext-1). */
  hosts: Record<string, string>;
}

export class ClusterState {
  readonly namespaces = new Map<string, NamespaceState>();
  readonly pods = new Map<string, PodState>();
  /** objectKey -> document, every kind. */
  readonly policies = new Map<string, PolicyDoc>();

  constructor(readonly addresses: Addresses) {}

  /** The model's starting point; IPs are filled in as pods are created. */
  static initialNamespaces(): NamespaceState[] {
    return NAMESPACES.map((ns) => ({ name: ns, labels: namespaceLabels(ns) }));
  }

  static initialPods(): Array<Omit<PodState, "ip">> {
    return NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => ({ key: `${ns}/${p}`, namespace: ns, name: p, node: HOME_NODE[p] as string, labels: podLabels(p), ports: [...CONTAINER_PORTS] })));
  }

  pod(key: string): PodState {
    const p = this.pods.get(key);
    if (!p) throw new Error(`no pod ${key} in the cluster state`);
    return p;
  }

  fill(text: string): string {
    return fillPlaceholders(text, this.addresses, (k) => this.pod(k).ip);
  }

  /** Applies object YAML to the model (create or replace by kind, namespace and name); returns the documents. */
  applyPolicies(yamlText: string): PolicyDoc[] {
    const docs = parsePolicyDocs(this.fill(yamlText));
    for (const d of docs) this.policies.set(objectKey({ kind: d.kind, namespace: d.metadata.namespace, name: d.metadata.name }), d);
    return docs;
  }

  /** The documents of one kind. */
  docs(kind: ObjectKind): PolicyDoc[] {
    return [...this.policies.values()].filter((d) => d.kind === kind);
  }

  relabel(change: LabelChange): Record<string, string> {
    const target = change.pod !== undefined ? this.pod(change.pod).labels : this.namespaces.get(change.ns ?? "")?.labels;
    if (!target) throw new Error(`label change names no known pod or namespace: ${JSON.stringify(change)}`);
    for (const [k, v] of Object.entries(change.set)) {
      if (v === null) delete target[k];
      else target[k] = v;
    }
    return { ...target };
  }

  deleteNamespace(name: string): void {
    this.namespaces.delete(name);
    for (const k of [...this.pods.keys()]) if (splitKey(k).namespace === name) this.pods.delete(k);
    for (const [k, d] of [...this.policies]) if (d.metadata.namespace === name) this.policies.delete(k);
  }
}

export function fillPlaceholders(text: string, a: Addresses, ipOf: (podKey: string) => string): string {
  return text.replace(/\{\{([a-z]+)(?::([^}]+))?\}\}/g, (m, kind: string, arg: string | undefined) => {
    if (kind === "network" && arg === undefined) return a.network;
    if (kind === "subnet" && arg !== undefined) {
      const s = a.subnets[arg];
      if (!s) throw new Error(`placeholder ${m}: no subnet known for ${arg}`);
      return s;
    }
    if (kind === "ip" && arg !== undefined) return ipOf(arg);
    if (kind === "host" && arg !== undefined) {
      const h = a.hosts[arg];
      if (!h) throw new Error(`placeholder ${m}: no host ${arg}`);
      return h;
    }
    throw new Error(`unknown placeholder ${m}`);
  });
}

export function parsePolicyDocs(text: string): PolicyDoc[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length) throw new Error(`policy YAML: ${d.errors.map((e) => e.message).join("; ")}`);
      return d.toJS() as unknown;
    })
    .filter((o) => o !== null && o !== undefined)
    .map((o) => {
      const doc = o as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown; labels?: unknown }; spec?: unknown };
      const kind = OBJECT_KINDS.find((k) => k === doc.kind);
      const ns = doc.metadata?.namespace;
      const namespaced = kind !== undefined && NAMESPACED.includes(kind);
      if (kind === undefined || typeof doc.metadata?.name !== "string" || (namespaced ? typeof ns !== "string" : ns !== undefined) || typeof doc.spec !== "object" || doc.spec === null) {
        throw new Error(`not a ${OBJECT_KINDS.join(" / ")} document with a name (a namespace exactly when namespaced) and a spec: ${JSON.stringify(o)}`);
      }
      const labels = doc.metadata.labels as Record<string, string> | undefined;
      return { kind, metadata: { name: doc.metadata.name, ...(namespaced ? { namespace: ns as string } : {}), ...(labels ? { labels } : {}) }, spec: doc.spec as Record<string, unknown> };
    });
}

/**
 * The model alone, with made-up addresses (node-K owns 10.244.1K.0/24): what the
 * cluster-free checks walk the scenarios with. `perform` applies a step's actions in the
 * runner's order; a re-created pod gets a fresh address on its new node.
 */
export class SimulatedCluster {
  readonly state: ClusterState;
  private readonly next = new Map<string, number>();

  constructor() {
    this.state = new ClusterState({ network: "10.244.0.0/16", subnets: { "node-1": "10.244.11.0/24", "node-2": "10.244.12.0/24", "node-3": "10.244.13.0/24" }, hosts: { "node-1": "10.250.1.11", "node-2": "10.250.1.12", "node-3": "10.250.1.13", [EXTERNAL_HOST]: "203.0.113.11" } });
    for (const ns of ClusterState.initialNamespaces()) this.state.namespaces.set(ns.name, ns);
    for (const p of ClusterState.initialPods()) this.state.pods.set(p.key, { ...p, ip: this.allocate(p.node) });
  }

  private allocate(node: string): string {
    const n = (this.next.get(node) ?? 1) + 1;
    this.next.set(node, n);
    const subnet = this.state.addresses.subnets[node];
    if (!subnet) throw new Error(`no node ${node}`);
    return subnet.replace(/0\/24$/, String(n));
  }

  perform(step: Step): void {
    const st = this.state;
    for (const ns of step.createNamespace ?? []) {
      st.namespaces.set(ns.name, { name: ns.name, labels: { ...ns.labels } });
      for (const p of ns.pods) st.pods.set(`${ns.name}/${p.name}`, { key: `${ns.name}/${p.name}`, namespace: ns.name, name: p.name, node: p.node, labels: { ...p.labels }, ip: this.allocate(p.node), ports: [...CONTAINER_PORTS] });
    }
    for (const r of step.recreatePod ?? []) st.pods.set(r.pod, { ...st.pod(r.pod), node: r.node, ip: this.allocate(r.node) });
    if (step.apply) st.applyPolicies(step.apply);
    for (const l of step.label ?? []) st.relabel(l);
    for (const key of step.delete ?? []) if (!st.policies.delete(objectKey(parseObjectKey(key)))) throw new Error(`delete of unknown object ${key}`);
    for (const ns of step.deleteNamespace ?? []) st.deleteNamespace(ns);
  }
}
