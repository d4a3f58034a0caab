/**
 * The kinds of object Sluice stores (etcd mode) and `sluicectl apply/get/delete` handle:
 * one registry entry per kind says its apiVersion, where it lives in etcd (plural,
 * namespaced or not), how it is validated (zod), what the CLI calls it and how `get`
 * prints it. The store, the agent-side source and the CLI are generic over this table, so
 * a new kind (ClusterNetworkPolicy, GlobalNetworkPolicy, NetworkSet, ...) is one entry
 * appended to KINDS.
 */
import type { z } from "zod";
import { type LabelSelector, type NamespaceObject, type NetworkPolicyObject, type PodObject, formatIssuePath, namespaceObject, networkPolicyObject, networkPolicyWithoutCopies, podObject, withoutUnusablePodAddresses } from "./k8sSchemas.js";
import type { DroppedValue } from "./netSchemas.js";
import { NAMESPACE_NAME_LABEL } from "../model/endpoint.js";
import {
  type ClusterNetworkPolicyObject,
  type GlobalNetworkPolicyObject,
  type GlobalNetworkSetObject,
  type NetworkSetObject,
  type NodeObject,
  clusterNetworkPolicyObject,
  globalNetworkPolicyObject,
  globalNetworkSetObject,
  gnpTypes,
  networkSetObject,
  nodeObject,
  withoutUnusableNodeAddresses,
} from "./policySchemas.js";

/** What every stored object has in common (the parts the store and the CLI look at). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string | undefined;
    labels?: Record<string, string> | undefined;
    annotations?: Record<string, string> | undefined;
    resourceVersion?: string | undefined;
    uid?: string | undefined;
    creationTimestamp?: string | undefined;
  };
}

/** One column of `sluicectl get` table output (NAME, NAMESPACE and AGE are added by the printer). */
export interface Column<T> {
  header: string;
  /** Shown only with `-o wide`. */
  wide?: boolean;
  value(o: T): string;
}

export interface ResourceKind<T extends KubeObject = KubeObject> {
  /** API group; "" for the core group (apiVersion "v1"). */
  group: string;
  version: string;
  kind: string;
  /** Lower-case plural: the etcd key segment and kubectl's resource name ("networkpolicies"). */
  plural: string;
  /** Lower-case singular ("networkpolicy"). */
  singular: string;
  namespaced: boolean;
  /** Extra CLI names besides kind, singular and plural (kubectl's short names: "netpol", "ns"). */
  shortNames: string[];
  /** Validates an object as the API server would and fills defaults. */
  schema: z.ZodType<T>;
  /** Fills what the API server would set on write (e.g. a Namespace's name label). Pure. */
  normalize?(o: T): T;
  /**
   * Drops values of a valid object that nothing downstream can use (a Pod's or a Node's
   * unspecified address), naming each: the object is kept without them and the reader
   * warns. Pure; runs before normalize.
   */
  dropUnusable?(o: T): { object: T; dropped: DroppedValue[] };
  /**
   * The object without exact copies in the lists its API defines as alternatives (ORed:
   * a copy adds nothing), and how many there were. Readers of large objects apply it
   * (offThreadValidation.ts), so the agent does not hold 40,000 copies of one peer; what is
   * stored stays as written.
   */
  withoutCopies?(o: T): { object: T; copies: number };
  /** Kind-specific table columns for `get`. */
  columns?: Column<T>[];
}

/** Declares a kind; only a type helper, so entries keep their precise object type. */
export function defineKind<T extends KubeObject>(k: ResourceKind<T>): ResourceKind<T> {
  return k;
}

export const apiVersionOf = (k: ResourceKind): string => (k.group ? `${k.group}/${k.version}` : k.version);
/** kubectl's name for the resource type in messages: "networkpolicy.networking.k8s.io", "namespace". */
export const qualifiedSingular = (k: ResourceKind): string => (k.group ? `${k.singular}.${k.group}` : k.singular);
/** kubectl's plural form in NotFound errors: "networkpolicies.networking.k8s.io", "namespaces". */
export const qualifiedPlural = (k: ResourceKind): string => (k.group ? `${k.plural}.${k.group}` : k.plural);

/** kubectl's label-selector text: `app=web,tier in (a,b),!legacy`; `<none>` for the empty selector. */
export function formatLabelSelector(s: LabelSelector | undefined): string {
  const parts: { key: string; text: string }[] = [];
  for (const [k, v] of Object.entries(s?.matchLabels ?? {})) parts.push({ key: k, text: `${k}=${v}` });
  for (const e of s?.matchExpressions ?? []) {
    const values = [...(e.values ?? [])].sort().join(",");
    const text = e.operator === "In" ? `${e.key} in (${values})` : e.operator === "NotIn" ? `${e.key} notin (${values})` : e.operator === "Exists" ? e.key : `!${e.key}`;
    parts.push({ key: e.key, text });
  }
  parts.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return parts.length ? parts.map((p) => p.text).join(",") : "<none>";
}

const labelsText = (l: Record<string, string> | undefined): string => {
  const e = Object.entries(l ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join(",") : "<none>";
};

export const namespaceKind = defineKind<NamespaceObject>({
  group: "",
  version: "v1",
  kind: "Namespace",
  plural: "namespaces",
  singular: "namespace",
  namespaced: false,
  shortNames: ["ns"],
  schema: namespaceObject,
  // The API server labels every namespace with its own name (Kubernetes >= 1.21), so
  // policies can select a namespace by name; a stored Namespace always carries it.
  normalize: (o) => ({ ...o, metadata: { ...o.metadata, labels: { ...o.metadata.labels, [NAMESPACE_NAME_LABEL]: o.metadata.name } } }),
  columns: [
    { header: "STATUS", value: () => "Active" },
    { header: "LABELS", wide: true, value: (o) => labelsText(o.metadata.labels) },
  ],
});

export const podKind = defineKind<PodObject>({
  group: "",
  version: "v1",
  kind: "Pod",
  plural: "pods",
  singular: "pod",
  namespaced: true,
  shortNames: ["po"],
  schema: podObject,
  dropUnusable: withoutUnusablePodAddresses,
  columns: [
    { header: "NODE", value: (o) => o.spec.nodeName ?? "<none>" },
    { header: "IP", wide: true, value: (o) => o.status?.podIP ?? o.status?.podIPs?.[0]?.ip ?? "<none>" },
    { header: "LABELS", wide: true, value: (o) => labelsText(o.metadata.labels) },
  ],
});

export const networkPolicyKind = defineKind<NetworkPolicyObject>({
  group: "networking.k8s.io",
  version: "v1",
  kind: "NetworkPolicy",
  plural: "networkpolicies",
  singular: "networkpolicy",
  namespaced: true,
  shortNames: ["netpol"],
  schema: networkPolicyObject,
  withoutCopies: networkPolicyWithoutCopies,
  columns: [{ header: "POD-SELECTOR", value: (o) => formatLabelSelector(o.spec.podSelector) }],
});

const SLUICE_GROUP = "sluice.dev";

/** A CNP subject in selector text: `namespaces: tenant=blue` or `pods: <namespace selector> / <pod selector>`. */
function cnpSubjectText(o: ClusterNetworkPolicyObject): string {
  const s = o.spec.subject;
  if (s.namespaces) return `namespaces: ${formatLabelSelector(s.namespaces)}`;
  return `pods: ${formatLabelSelector(s.pods?.namespaceSelector)} / ${formatLabelSelector(s.pods?.podSelector)}`;
}

/** The first nets of a set, then how many more: `10.0.0.0/8,172.16.0.0/12 + 3 more`. */
function netsText(nets: readonly string[] | undefined): string {
  const n = nets ?? [];
  if (n.length === 0) return "<none>";
  const shown = n.slice(0, 3).join(",");
  return n.length > 3 ? `${shown} + ${n.length - 3} more` : shown;
}

const directionsText = (d: { ingress: boolean; egress: boolean }): string => [d.ingress ? "Ingress" : "", d.egress ? "Egress" : ""].filter(Boolean).join(",") || "<none>";

export const clusterNetworkPolicyKind = defineKind<ClusterNetworkPolicyObject>({
  group: "policy.networking.k8s.io",
  version: "v1alpha2",
  kind: "ClusterNetworkPolicy",
  plural: "clusternetworkpolicies",
  singular: "clusternetworkpolicy",
  namespaced: false,
  shortNames: ["cnp"],
  schema: clusterNetworkPolicyObject,
  columns: [
    { header: "TIER", value: (o) => o.spec.tier },
    { header: "PRIORITY", value: (o) => String(o.spec.priority) },
    { header: "SUBJECT", wide: true, value: cnpSubjectText },
  ],
});

export const globalNetworkPolicyKind = defineKind<GlobalNetworkPolicyObject>({
  group: SLUICE_GROUP,
  version: "v1",
  kind: "GlobalNetworkPolicy",
  plural: "globalnetworkpolicies",
  singular: "globalnetworkpolicy",
  namespaced: false,
  shortNames: ["gnp"],
  schema: globalNetworkPolicyObject,
  columns: [
    { header: "ORDER", value: (o) => (o.spec.order === undefined ? "<none>" : String(o.spec.order)) },
    { header: "SELECTOR", value: (o) => formatLabelSelector(o.spec.selector) },
    { header: "NAMESPACE-SELECTOR", wide: true, value: (o) => formatLabelSelector(o.spec.namespaceSelector) },
    { header: "TYPES", wide: true, value: (o) => directionsText(gnpTypes(o)) },
  ],
});

/** NETS and (wide) LABELS, for NetworkSet and GlobalNetworkSet. */
const setColumns: Column<NetworkSetObject | GlobalNetworkSetObject>[] = [
  { header: "NETS", value: (o) => netsText(o.spec.nets) },
  { header: "LABELS", wide: true, value: (o) => labelsText(o.metadata.labels) },
];

export const networkSetKind = defineKind<NetworkSetObject>({
  group: SLUICE_GROUP,
  version: "v1",
  kind: "NetworkSet",
  plural: "networksets",
  singular: "networkset",
  namespaced: true,
  shortNames: ["netsets"],
  schema: networkSetObject,
  columns: setColumns,
});

export const globalNetworkSetKind = defineKind<GlobalNetworkSetObject>({
  group: SLUICE_GROUP,
  version: "v1",
  kind: "GlobalNetworkSet",
  plural: "globalnetworksets",
  singular: "globalnetworkset",
  namespaced: false,
  shortNames: ["globalnetsets"],
  schema: globalNetworkSetObject,
  columns: setColumns,
});

const NODE_ROLE_PREFIX = "node-role.kubernetes.io/";
const nodeAddress = (o: NodeObject, type: string): string => o.status?.addresses?.find((a) => a.type === type)?.address ?? "<none>";

export const nodeKind = defineKind<NodeObject>({
  group: "",
  version: "v1",
  kind: "Node",
  plural: "nodes",
  singular: "node",
  namespaced: false,
  shortNames: ["no"],
  schema: nodeObject,
  dropUnusable: withoutUnusableNodeAddresses,
  columns: [
    {
      header: "STATUS",
      value: (o) => {
        const ready = o.status?.conditions?.find((c) => c.type === "Ready")?.status;
        return ready === "True" ? "Ready" : ready === "False" ? "NotReady" : "Unknown";
      },
    },
    {
      header: "ROLES",
      value: (o) =>
        Object.keys(o.metadata.labels ?? {})
          .filter((k) => k.startsWith(NODE_ROLE_PREFIX) && k.length > NODE_ROLE_PREFIX.length)
          .map((k) => k.slice(NODE_ROLE_PREFIX.length))
          .sort()
          .join(",") || "<none>",
    },
    { header: "INTERNAL-IP", wide: true, value: (o) => nodeAddress(o, "InternalIP") },
    { header: "EXTERNAL-IP", wide: true, value: (o) => nodeAddress(o, "ExternalIP") },
    { header: "POD-CIDR", wide: true, value: (o) => o.spec.podCIDRs?.join(",") ?? o.spec.podCIDR ?? "<none>" },
  ],
});

/**
 * Every kind Sluice stores. Append new kinds here (and nowhere else): the store, the
 * agent's PolicySource (snapshot().objects[kind]) and sluicectl pick them up.
 */
export const KINDS: readonly ResourceKind[] = [namespaceKind, podKind, networkPolicyKind, clusterNetworkPolicyKind, globalNetworkPolicyKind, networkSetKind, globalNetworkSetKind, nodeKind] as ResourceKind[];

/** etcd key segments that are not registry kinds but live under the same prefix. */
export const RESERVED_PLURALS: readonly string[] = ["workloadendpoints"];

/** Throws when two kinds would share an etcd plural or a CLI name; run at load time. */
export function checkRegistry(kinds: readonly ResourceKind[]): void {
  const plurals = new Set<string>(RESERVED_PLURALS);
  const names = new Map<string, string>();
  const types = new Set<string>();
  for (const k of kinds) {
    const id = `${apiVersionOf(k)}/${k.kind}`;
    if (types.has(id)) throw new Error(`kind registry: ${id} is registered twice`);
    types.add(id);
    if (plurals.has(k.plural)) throw new Error(`kind registry: plural "${k.plural}" of ${id} is already taken`);
    plurals.add(k.plural);
    for (const n of namesOf(k)) {
      const other = names.get(n);
      if (other !== undefined && other !== id) throw new Error(`kind registry: name "${n}" of ${id} is already used by ${other}`);
      names.set(n, id);
    }
  }
}
checkRegistry(KINDS);

function namesOf(k: ResourceKind): string[] {
  const base = [k.kind.toLowerCase(), k.singular, k.plural, ...k.shortNames.map((s) => s.toLowerCase())];
  return [...new Set(k.group ? [...base, `${k.singular}.${k.group}`, `${k.plural}.${k.group}`, `${k.kind.toLowerCase()}.${k.group}`] : base)];
}

/** The kind for an apiVersion + kind pair, or undefined. */
export function kindFor(apiVersion: string, kind: string, kinds: readonly ResourceKind[] = KINDS): ResourceKind | undefined {
  return kinds.find((k) => k.kind === kind && apiVersionOf(k) === apiVersion);
}

/** Kinds with this kind name in any version (to say "NetworkPolicy is networking.k8s.io/v1" when the version is wrong). */
export function kindsNamed(kind: string, kinds: readonly ResourceKind[] = KINDS): ResourceKind[] {
  return kinds.filter((k) => k.kind === kind);
}

export function kindByPlural(plural: string, kinds: readonly ResourceKind[] = KINDS): ResourceKind | undefined {
  return kinds.find((k) => k.plural === plural);
}

/** Resolves what a user typed (`netpol`, `NetworkPolicies`, `networkpolicy.networking.k8s.io`, `ns`). */
export function resolveKindName(name: string, kinds: readonly ResourceKind[] = KINDS): ResourceKind | undefined {
  const n = name.toLowerCase();
  return kinds.find((k) => namesOf(k).includes(n));
}

/** Every name `get`/`delete` accept, for help and error text. */
export function kindNamesHelp(kinds: readonly ResourceKind[] = KINDS): string {
  return kinds.map((k) => [k.plural, ...k.shortNames].join("|")).join(", ");
}

/**
 * The most bytes of JSON one object may take: what the Kubernetes API server can store
 * (etcd's default request limit, --max-request-bytes, is 1.5 MiB and the API server
 * refuses larger objects). Sluice holds its own etcd objects to the same limit, so a
 * policy is never bigger than a cluster could hold.
 */
export const MAX_OBJECT_BYTES = 1.5 * 1024 * 1024;

/** Why `bytes` of JSON cannot be one object, or undefined when they can. */
export function objectSizeProblem(bytes: number): string | undefined {
  return bytes > MAX_OBJECT_BYTES ? `is ${bytes} bytes of JSON, over the ${MAX_OBJECT_BYTES} bytes (1.5 MiB) one Kubernetes object may take` : undefined;
}

export interface ValidationIssue {
  /** `spec.ingress[0].from[0].ipBlock.cidr`, or "(root)". */
  path: string;
  message: string;
}

/** A valid object (normalised, without the values in `dropped`), or why it is not valid. */
export type Validated<T> = { ok: true; object: T; dropped: ValidationIssue[] } | { ok: false; issues: ValidationIssue[] };

/**
 * Validates one object of a known kind, drops the values the kind says nothing can use
 * (reported in `dropped`, for a warning naming the object) and applies the kind's
 * normalisation. Messages name the field path and the reason; zod's "expected string,
 * received undefined" reads as "is required".
 */
export function validateObject<T extends KubeObject>(kind: ResourceKind<T>, raw: unknown): Validated<T> {
  const r = kind.schema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.flatMap((i): ValidationIssue[] =>
      // kubectl says `unknown field "spec.bogus"`: one issue per key, at the key's own path.
      i.code === "unrecognized_keys"
        ? i.keys.map((k) => ({ path: formatIssuePath([...i.path, k]), message: "unknown field" }))
        : i.code === "invalid_key"
          ? [{ path: formatIssuePath(i.path.slice(0, -1)), message: `key "${String(i.path[i.path.length - 1])}": ${i.issues.map((x) => x.message).join("; ")}` }]
          : [{ path: formatIssuePath(i.path), message: readableMessage(i.message) }],
    );
    return { ok: false, issues };
  }
  const cleaned = kind.dropUnusable ? kind.dropUnusable(r.data) : { object: r.data, dropped: [] };
  const object = kind.normalize ? kind.normalize(cleaned.object) : cleaned.object;
  return { ok: true, object, dropped: cleaned.dropped };
}

function readableMessage(m: string): string {
  const missing = /^Invalid input: expected (\w+), received undefined$/.exec(m);
  if (missing) return `is required (${missing[1]})`;
  return m;
}
