/**
 * zod schemas for the Kubernetes objects Sluice reads: Namespace, Pod (the parts policy
 * needs), NetworkPolicy (networking.k8s.io/v1). They follow the API server's own
 * validation, so an object `sluicectl apply` accepts is one kubectl would accept, and a
 * rejected one gets a message naming the field (`spec.ingress[0].from[1].ipBlock.cidr`);
 * JSON null reads as the API server reads it (nullsAsTheApiServerReadsThem).
 */
import { z } from "zod";
import { cidrContains, parseCidr } from "../model/ip.js";
import { PROTOCOLS } from "../model/endpoint.js";
import { type DroppedValue, hostAddressProblem } from "./netSchemas.js";

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
/** IANA_SVC_NAME: what a named port may be called. */
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export const dns1123Label = z.string().max(63, "must be at most 63 characters").regex(DNS1123_LABEL, "must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit)");
export const dns1123Subdomain = z.string().max(253, "must be at most 253 characters").regex(DNS1123_SUBDOMAIN, "must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')");

export const labelKey = z.string().refine((k) => {
  const slash = k.lastIndexOf("/");
  const prefix = slash >= 0 ? k.slice(0, slash) : undefined;
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) return false;
  return name.length > 0 && name.length <= 63 && LABEL_NAME.test(name);
}, "must be a label key: an optional DNS subdomain prefix and '/', then at most 63 characters of letters, digits, '-', '_' or '.'");
export const labelValue = z.string().max(63, "must be at most 63 characters").regex(LABEL_VALUE, "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
export const labels = z.record(labelKey, labelValue);

export const portName = z.string().max(15, "must be at most 15 characters").regex(PORT_NAME, "must be a port name (IANA_SVC_NAME: lower-case letters, digits and '-', at least one letter)");
export const portNumber = z.number().int("must be an integer").min(1, "must be between 1 and 65535").max(65535, "must be between 1 and 65535");
export const protocol = z.enum(PROTOCOLS as [string, ...string[]], { message: "must be TCP, UDP or SCTP" }).transform((p) => p as (typeof PROTOCOLS)[number]);

export const objectMeta = z.object({
  name: dns1123Subdomain,
  namespace: dns1123Label.optional(),
  labels: labels.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  resourceVersion: z.string().optional(),
  uid: z.string().optional(),
  generation: z.number().optional(),
  creationTimestamp: z.string().optional(),
});

export const labelSelectorRequirement = z
  .object({
    key: labelKey,
    operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"], { message: "must be In, NotIn, Exists or DoesNotExist" }),
    values: z.array(labelValue).optional(),
  })
  .superRefine((r, ctx) => {
    const n = r.values?.length ?? 0;
    if ((r.operator === "In" || r.operator === "NotIn") && n === 0) ctx.addIssue({ code: "custom", path: ["values"], message: `must be non-empty when operator is ${r.operator}` });
    if ((r.operator === "Exists" || r.operator === "DoesNotExist") && n > 0) ctx.addIssue({ code: "custom", path: ["values"], message: `must be empty when operator is ${r.operator}` });
  });

/**
 * JSON null as the API server reads it, for a whole object of a kind (`schema` sees the
 * object without it). Go decodes a null pointer, slice or map field as nil, absent; a
 * CRD's structural schema prunes a null of a field that is not `nullable` (none of ours is)
 * before defaulting and validation, absent too. So a null member of an object is dropped,
 * at any depth: `matchLabels:`, `namespaceSelector:`, `from:` written without a value mean
 * the field is not there, and a required one is still missing. A null array item is kept
 * (an error in both). `zeroAt`: the paths of Go's non-pointer struct fields, which decode
 * null as the zero value instead: NetworkPolicy spec.podSelector, the empty selector (every
 * pod of the namespace; upstream's own manifests write `podSelector:` for that).
 */
export function nullsAsTheApiServerReadsThem<T extends z.ZodType>(schema: T, zeroAt: ReadonlyArray<readonly string[]> = []) {
  return z.preprocess((v) => withoutNulls(v, zeroAt, []), schema);
}

function withoutNulls(v: unknown, zeroAt: ReadonlyArray<readonly string[]>, path: readonly string[]): unknown {
  if (Array.isArray(v)) return v.map((x) => (x === null ? x : withoutNulls(x, [], [])));
  if (typeof v !== "object" || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const at = [...path, k];
    if (x !== null) out[k] = withoutNulls(x, zeroAt, at);
    else if (zeroAt.some((z) => z.length === at.length && z.every((part, i) => part === at[i]))) out[k] = {};
  }
  return out;
}

/** A standard label selector; `{}` selects everything. */
export const labelSelector = z.object({
  matchLabels: labels.optional(),
  matchExpressions: z.array(labelSelectorRequirement).optional(),
});
export type LabelSelector = z.infer<typeof labelSelector>;

// ---- Namespace ----

export const namespaceObject = nullsAsTheApiServerReadsThem(
  z.object({
    apiVersion: z.literal("v1", { message: 'must be "v1"' }),
    kind: z.literal("Namespace"),
    metadata: objectMeta.extend({ name: dns1123Label }),
  }),
);
export type NamespaceObject = z.infer<typeof namespaceObject>;

// ---- Pod (what policy needs of it) ----

export const containerPortObject = z.object({
  name: portName.optional(),
  containerPort: portNumber,
  protocol: protocol.default("TCP"),
  hostPort: portNumber.optional(),
});

export const podObject = nullsAsTheApiServerReadsThem(
  z.object({
    apiVersion: z.literal("v1", { message: 'must be "v1"' }),
    kind: z.literal("Pod"),
    metadata: objectMeta.extend({ namespace: dns1123Label.default("default") }),
    spec: z
      .object({
        nodeName: z.string().optional(),
        hostNetwork: z.boolean().optional(),
        containers: z.array(z.object({ name: z.string().optional(), image: z.string().optional(), ports: z.array(containerPortObject).optional() }).loose()).default([]),
      })
      .loose()
      .default({ containers: [] }),
    status: z.object({ podIP: z.string().optional(), podIPs: z.array(z.object({ ip: z.string() })).optional(), phase: z.string().optional() }).loose().optional(),
  }),
);
export type PodObject = z.infer<typeof podObject>;

/**
 * A Pod without the addresses in its status that no pod may have (not an IP address, or
 * 0.0.0.0, ::, loopback, multicast: hostAddressProblem), each named in `dropped`. The
 * status is the kubelet's, not the author's, so the Pod itself is kept: its labels and its
 * other addresses still count. Such an address would reach a hash:ip set, which the kernel
 * refuses (the unspecified address) or which would then match what it should not.
 */
export function withoutUnusablePodAddresses(p: PodObject): { object: PodObject; dropped: DroppedValue[] } {
  const status = p.status;
  if (!status) return { object: p, dropped: [] };
  const dropped: DroppedValue[] = [];
  const check = (path: string, ip: string): boolean => {
    const problem = hostAddressProblem(ip);
    if (problem !== undefined) dropped.push({ path, message: `${problem}; dropped` });
    return problem === undefined;
  };
  const podIP = status.podIP !== undefined && !check("status.podIP", status.podIP) ? undefined : status.podIP;
  const podIPs = status.podIPs?.filter((x, i) => check(`status.podIPs[${i}].ip`, x.ip));
  if (dropped.length === 0) return { object: p, dropped };
  const next = { ...status, podIP, podIPs };
  if (podIP === undefined) delete next.podIP;
  if (podIPs === undefined) delete next.podIPs;
  return { object: { ...p, status: next }, dropped };
}

// ---- NetworkPolicy ----

const ipBlock = z
  .object({
    cidr: z.string().refine(isCidr, "must be a CIDR such as 10.0.0.0/8"),
    except: z.array(z.string().refine(isCidr, "must be a CIDR such as 10.1.0.0/16")).optional(),
  })
  .superRefine((b, ctx) => {
    if (!isCidr(b.cidr)) return;
    const outer = parseCidr(b.cidr);
    (b.except ?? []).forEach((e, i) => {
      if (!isCidr(e)) return;
      const inner = parseCidr(e);
      if (inner.family !== outer.family || !cidrContains(outer, inner) || inner.prefixLen <= outer.prefixLen) {
        ctx.addIssue({ code: "custom", path: ["except", i], message: `must be strictly within cidr ${b.cidr}` });
      }
    });
  });

const peer = z
  .object({
    podSelector: labelSelector.optional(),
    namespaceSelector: labelSelector.optional(),
    ipBlock: ipBlock.optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    const selectors = p.podSelector !== undefined || p.namespaceSelector !== undefined;
    if (!selectors && p.ipBlock === undefined) ctx.addIssue({ code: "custom", message: "must specify podSelector, namespaceSelector or ipBlock" });
    if (selectors && p.ipBlock !== undefined) ctx.addIssue({ code: "custom", path: ["ipBlock"], message: "may not be combined with podSelector or namespaceSelector" });
  });
export type NetworkPolicyPeer = z.infer<typeof peer>;

const npPort = z
  .object({
    protocol: protocol.default("TCP"),
    port: z.union([portNumber, portName]).optional(),
    endPort: portNumber.optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.endPort === undefined) return;
    if (typeof p.port !== "number") ctx.addIssue({ code: "custom", path: ["endPort"], message: "may only be set when port is a number" });
    else if (p.endPort < p.port) ctx.addIssue({ code: "custom", path: ["endPort"], message: `must be greater than or equal to port (${p.port})` });
  });
export type NetworkPolicyPort = z.infer<typeof npPort>;

const ingressRule = z.object({ from: z.array(peer).optional(), ports: z.array(npPort).optional() }).strict();
const egressRule = z.object({ to: z.array(peer).optional(), ports: z.array(npPort).optional() }).strict();
export type NetworkPolicyIngressRule = z.infer<typeof ingressRule>;
export type NetworkPolicyEgressRule = z.infer<typeof egressRule>;

/** NetworkPolicy; `podSelector:` without a value is the empty selector, as the API server reads it. */
export const networkPolicyObject = nullsAsTheApiServerReadsThem(
  z.object({
    apiVersion: z.literal("networking.k8s.io/v1", { message: 'must be "networking.k8s.io/v1"' }),
    kind: z.literal("NetworkPolicy"),
    metadata: objectMeta.extend({ namespace: dns1123Label.default("default") }),
    spec: z
      .object({
        podSelector: labelSelector,
        policyTypes: z.array(z.enum(["Ingress", "Egress"], { message: "must be Ingress or Egress" })).optional(),
        ingress: z.array(ingressRule).optional(),
        egress: z.array(egressRule).optional(),
      })
      .strict(),
  }),
  [["spec", "podSelector"]],
);
export type NetworkPolicyObject = z.infer<typeof networkPolicyObject>;

/**
 * The directions a NetworkPolicy applies to, defaulted as the API server does: Ingress
 * always, Egress when there are egress rules.
 */
export function effectivePolicyTypes(np: NetworkPolicyObject): { ingress: boolean; egress: boolean } {
  const t = np.spec.policyTypes;
  if (t && t.length > 0) return { ingress: t.includes("Ingress"), egress: t.includes("Egress") };
  return { ingress: true, egress: np.spec.egress !== undefined && np.spec.egress.length > 0 };
}

/**
 * The policy without exact copies (equal JSON) of a rule, a peer or a port: each of those
 * lists is ORed, so a copy adds nothing. First ones kept, in order.
 */
export function networkPolicyWithoutCopies(np: NetworkPolicyObject): { object: NetworkPolicyObject; copies: number } {
  let copies = 0;
  const distinct = <T>(xs: T[] | undefined): T[] | undefined => {
    if (!xs || xs.length < 2) return xs;
    const seen = new Set<string>();
    const out = xs.filter((x) => {
      const k = JSON.stringify(x);
      return seen.has(k) ? false : (seen.add(k), true);
    });
    copies += xs.length - out.length;
    return out;
  };
  const spec = { ...np.spec };
  if (np.spec.ingress) spec.ingress = distinct(np.spec.ingress.map((r) => ({ ...r, ...(r.from && { from: distinct(r.from) }), ...(r.ports && { ports: distinct(r.ports) }) })));
  if (np.spec.egress) spec.egress = distinct(np.spec.egress.map((r) => ({ ...r, ...(r.to && { to: distinct(r.to) }), ...(r.ports && { ports: distinct(r.ports) }) })));
  return copies === 0 ? { object: np, copies } : { object: { ...np, spec }, copies };
}

/** True when `s` parses as a CIDR (host bits may be set, as the API server accepts). */
export function isCidr(s: string): boolean {
  try {
    parseCidr(s);
    return true;
  } catch {
    return false;
  }
}

/** `spec.ingress[0].from[1].ipBlock.cidr` — the path style kubectl users read. */
export function formatIssuePath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || "(root)";
}
