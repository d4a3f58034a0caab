/**
 * zod schemas for the cluster-wide policy kinds and what they reference:
 *
 * - ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2), field for field the
 *   published API of kubernetes-sigs/network-policy-api (experimental channel, which has
 *   `nodes` peers and `destinationNamedPort`), with the validation of its generated CRD:
 *   priority 0..1000, exactly one field per subject / peer / protocol / port, at most 25
 *   rules, peers, protocols and CIDRs, CIDR syntax, `start < end` for port ranges, no
 *   named port next to a `networks`/`nodes`/`domainNames` peer;
 * - Sluice's GlobalNetworkPolicy, NetworkSet and GlobalNetworkSet (sluice.dev/v1), shaped
 *   after Calico's kinds of the same names but with standard label selectors;
 * - core v1 Node, read (not authored): permissive, it keeps every field a real
 *   `kubectl get node -o yaml` carries and checks only what policy reads.
 *
 * crds/*.yaml say the same things to the API server; test/unit/policySchemas.test.ts
 * checks both against one list of good and bad objects. Messages name the field
 * (`spec.egress[1].to[0].networks[2]`) and the reason. A null value is read as the API
 * server reads one (the CRDs' null pruning: the field is absent; nullsAsTheApiServerReadsThem).
 */
import { z } from "zod";
import { dns1123Label, dns1123Subdomain, isCidr, labelSelector, labels, nullsAsTheApiServerReadsThem, objectMeta, portName, portNumber } from "./k8sSchemas.js";
import { type DroppedValue, hostAddressProblem } from "./netSchemas.js";

/** Issues "must set exactly one of ..." on the object, or "may not be combined with ..." on each extra field. */
function exactlyOne(o: Record<string, unknown>, keys: readonly string[], ctx: z.RefinementCtx): void {
  const set = keys.filter((k) => o[k] !== undefined);
  if (set.length === 0) ctx.addIssue({ code: "custom", message: `must set exactly one of ${keys.join(", ")}` });
  for (const k of set.slice(1)) ctx.addIssue({ code: "custom", path: [k], message: `may not be combined with ${set[0] as string}` });
}

/** A list whose items must be distinct (the CRD's `x-kubernetes-list-type: set`). */
function distinct<T extends z.ZodType>(item: T, what: string) {
  return z.array(item).superRefine((xs, ctx) => {
    const seen = new Set<string>();
    xs.forEach((x, i) => {
      const k = JSON.stringify(x);
      if (seen.has(k)) ctx.addIssue({ code: "custom", path: [i], message: `duplicate ${what}` });
      seen.add(k);
    });
  });
}

export const cidrText = z.string().refine(isCidr, "must be a CIDR such as 10.0.0.0/8 or fd00::/8");
/** The published CIDR type: at most 43 characters (the longest IPv6 CIDR). */
const cidr43 = z.string().max(43, "must be at most 43 characters").refine(isCidr, "must be a CIDR such as 10.0.0.0/8 or fd00::/8");
/** What a rule's `name` may be (the published CNP: at most 100 characters). */
export const ruleName = z.string().max(100, "must be at most 100 characters");

/** apiVersion and kind of one kind, with kubectl-like messages. */
function typeMeta<A extends string, K extends string>(apiVersion: A, kind: K) {
  return { apiVersion: z.literal(apiVersion, { message: `must be "${apiVersion}"` }), kind: z.literal(kind) };
}

/** An integer in min..max. */
const intBetween = (min: number, max: number) => z.number().int("must be an integer").min(min, `must be between ${min} and ${max}`).max(max, `must be between ${min} and ${max}`);

const statusConditions = z.object({ conditions: z.array(z.object({ type: z.string(), status: z.string() }).loose()).optional() }).loose();

// ---- ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) ----

const DOMAIN_NAME = /^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$/;

const namespacedPod = z.object({ namespaceSelector: labelSelector.optional(), podSelector: labelSelector }).strict();
export type NamespacedPod = z.infer<typeof namespacedPod>;

const portRange = z
  .object({ start: portNumber, end: portNumber })
  .strict()
  .superRefine((r, ctx) => {
    if (r.start >= r.end) ctx.addIssue({ code: "custom", path: ["end"], message: `must be greater than start (${r.start})` });
  });

const cnpPort = z
  .object({ number: portNumber.optional(), range: portRange.optional() })
  .strict()
  .superRefine((p, ctx) => exactlyOne(p, ["number", "range"], ctx));
export type CnpPort = z.infer<typeof cnpPort>;

const protocolMatch = z.object({ destinationPort: cnpPort }).strict();

const cnpProtocol = z
  .object({ tcp: protocolMatch.optional(), udp: protocolMatch.optional(), sctp: protocolMatch.optional(), destinationNamedPort: portName.optional() })
  .strict()
  .superRefine((p, ctx) => exactlyOne(p, ["tcp", "udp", "sctp", "destinationNamedPort"], ctx));
export type CnpProtocol = z.infer<typeof cnpProtocol>;

const cnpIngressPeer = z
  .object({ namespaces: labelSelector.optional(), pods: namespacedPod.optional() })
  .strict()
  .superRefine((p, ctx) => exactlyOne(p, ["namespaces", "pods"], ctx));

const cnpEgressPeer = z
  .object({
    namespaces: labelSelector.optional(),
    pods: namespacedPod.optional(),
    nodes: labelSelector.optional(),
    networks: distinct(cidr43, "CIDR").min(1, "must have at least 1 item").max(25, "must have at most 25 items").optional(),
    domainNames: distinct(z.string().regex(DOMAIN_NAME, "must be a domain name, optionally starting with *."), "domain name").min(1, "must have at least 1 item").max(25, "must have at most 25 items").optional(),
  })
  .strict()
  .superRefine((p, ctx) => exactlyOne(p, ["namespaces", "pods", "nodes", "networks", "domainNames"], ctx));
export type CnpIngressPeer = z.infer<typeof cnpIngressPeer>;
export type CnpEgressPeer = z.infer<typeof cnpEgressPeer>;

const cnpAction = z.enum(["Accept", "Deny", "Pass"], { message: "must be Accept, Deny or Pass" });
const protocols = z.array(cnpProtocol).min(1, "must have at least 1 item").max(25, "must have at most 25 items");
const peers = <T extends z.ZodType>(p: T) => z.array(p).min(1, "must have at least 1 item").max(25, "must have at most 25 items");

const cnpIngressRule = z.object({ name: ruleName.optional(), action: cnpAction, from: peers(cnpIngressPeer), protocols: protocols.optional() }).strict();
const cnpEgressRule = z
  .object({ name: ruleName.optional(), action: cnpAction, to: peers(cnpEgressPeer), protocols: protocols.optional() })
  .strict()
  .superRefine((r, ctx) => {
    const nonPod = r.to.findIndex((p) => p.networks !== undefined || p.nodes !== undefined || p.domainNames !== undefined);
    const named = (r.protocols ?? []).findIndex((p) => p.destinationNamedPort !== undefined);
    if (nonPod >= 0 && named >= 0) ctx.addIssue({ code: "custom", path: ["protocols", named, "destinationNamedPort"], message: "may not be used with a networks, nodes or domainNames peer (they have no named ports)" });
    // The published API supports domainNames only in Accept rules.
    const dn = r.to.findIndex((p) => p.domainNames !== undefined);
    if (dn >= 0 && r.action !== "Accept") ctx.addIssue({ code: "custom", path: ["to", dn, "domainNames"], message: "is only allowed in Accept rules" });
  });
export type CnpIngressRule = z.infer<typeof cnpIngressRule>;
export type CnpEgressRule = z.infer<typeof cnpEgressRule>;

export const clusterNetworkPolicyObject = nullsAsTheApiServerReadsThem(
  z.object({
    ...typeMeta("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy"),
    metadata: objectMeta,
    spec: z
      .object({
        tier: z.enum(["Admin", "Baseline"], { message: "must be Admin or Baseline" }),
        priority: intBetween(0, 1000),
        subject: z
          .object({ namespaces: labelSelector.optional(), pods: namespacedPod.optional() })
          .strict()
          .superRefine((s, ctx) => exactlyOne(s, ["namespaces", "pods"], ctx)),
        ingress: z.array(cnpIngressRule).max(25, "must have at most 25 rules").optional(),
        egress: z.array(cnpEgressRule).max(25, "must have at most 25 rules").optional(),
      })
      .strict(),
    status: statusConditions.optional(),
  }),
);
export type ClusterNetworkPolicyObject = z.infer<typeof clusterNetworkPolicyObject>;

// ---- GlobalNetworkPolicy (sluice.dev/v1) ----

const SLUICE_V1 = "sluice.dev/v1";

export const GNP_PROTOCOLS = ["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"] as const;
export type GnpProtocol = (typeof GNP_PROTOCOLS)[number];
const PORT_RANGE = /^(\d{1,5}):(\d{1,5})$/;
/** The largest GlobalNetworkPolicy `order`. */
export const MAX_GNP_ORDER = 1_000_000_000;

/** A Calico port as a range (a number is a one-port range) or a container port name. */
export function parseGnpPort(p: number | string): { from: number; to: number } | { name: string } {
  if (typeof p === "number") return { from: p, to: p };
  const m = PORT_RANGE.exec(p);
  return m ? { from: Number(m[1]), to: Number(m[2]) } : { name: p };
}

/** A Calico port: a number, `"start:end"` (inclusive, start <= end) or a container port name. */
const gnpPort = z.union([portNumber, z.string()], { message: 'must be a port number, a range "start:end" or a port name' }).superRefine((p, ctx) => {
  if (typeof p === "number") return;
  const r = parseGnpPort(p);
  if ("from" in r) {
    if (r.from < 1 || r.to > 65535 || r.from > r.to) ctx.addIssue({ code: "custom", message: `range "${p}" must be start:end with 1 <= start <= end <= 65535` });
    return;
  }
  if (!portName.safeParse(p).success) ctx.addIssue({ code: "custom", message: `"${p}" is not a port number, a range "start:end" or a port name (IANA_SVC_NAME: at most 15 lower-case letters, digits and '-', at least one letter)` });
});
export type GnpPort = z.infer<typeof gnpPort>;

const entityRule = z
  .object({
    selector: labelSelector.optional(),
    namespaceSelector: labelSelector.optional(),
    nets: z.array(cidrText).max(256, "must have at most 256 items").optional(),
    notNets: z.array(cidrText).max(256, "must have at most 256 items").optional(),
    ports: z.array(gnpPort).max(64, "must have at most 64 items").optional(),
    notPorts: z.array(gnpPort).max(64, "must have at most 64 items").optional(),
  })
  .strict();
export type EntityRule = z.infer<typeof entityRule>;

const gnpRule = z
  .object({
    name: ruleName.optional(),
    action: z.enum(["Allow", "Deny", "Pass", "Log"], { message: "must be Allow, Deny, Pass or Log" }),
    protocol: z.enum(GNP_PROTOCOLS, { message: "must be TCP, UDP, SCTP, ICMP or ICMPv6" }).optional(),
    icmp: z
      .object({
        type: intBetween(0, 254).optional(),
        code: intBetween(0, 255).optional(),
      })
      .strict()
      .superRefine((i, ctx) => {
        if (i.code !== undefined && i.type === undefined) ctx.addIssue({ code: "custom", path: ["code"], message: "may only be set with type" });
      })
      .optional(),
    source: entityRule.optional(),
    destination: entityRule.optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    const portProto = r.protocol === "TCP" || r.protocol === "UDP" || r.protocol === "SCTP";
    for (const side of ["source", "destination"] as const) {
      for (const f of ["ports", "notPorts"] as const) {
        if (r[side]?.[f] === undefined || portProto) continue;
        ctx.addIssue({ code: "custom", path: [side, f], message: "needs protocol TCP, UDP or SCTP" });
      }
    }
    if (r.icmp !== undefined && r.protocol !== "ICMP" && r.protocol !== "ICMPv6") ctx.addIssue({ code: "custom", path: ["icmp"], message: "needs protocol ICMP or ICMPv6" });
    // Named ports are container ports of the destination pod: a source port has none.
    for (const f of ["ports", "notPorts"] as const) {
      (r.source?.[f] ?? []).forEach((p, i) => {
        if ("name" in parseGnpPort(p)) ctx.addIssue({ code: "custom", path: ["source", f, i], message: "must be a number or a range: named ports are only allowed in destination ports" });
      });
    }
  });
export type GnpRule = z.infer<typeof gnpRule>;

export const globalNetworkPolicyObject = nullsAsTheApiServerReadsThem(
  z.object({
    ...typeMeta(SLUICE_V1, "GlobalNetworkPolicy"),
    metadata: objectMeta,
    spec: z
      .object({
        order: z.number().min(0, `must be between 0 and ${MAX_GNP_ORDER}`).max(MAX_GNP_ORDER, `must be between 0 and ${MAX_GNP_ORDER}`).optional(),
        selector: labelSelector.optional(),
        namespaceSelector: labelSelector.optional(),
        types: distinct(z.enum(["Ingress", "Egress"], { message: "must be Ingress or Egress" }), "type").optional(),
        ingress: z.array(gnpRule).max(100, "must have at most 100 rules").optional(),
        egress: z.array(gnpRule).max(100, "must have at most 100 rules").optional(),
      })
      .strict(),
  }),
);
export type GlobalNetworkPolicyObject = z.infer<typeof globalNetworkPolicyObject>;

/**
 * The directions a GlobalNetworkPolicy applies to, defaulted as Calico does: `types` when
 * given; else Egress when it has egress rules, Ingress when it has ingress rules or none
 * at all.
 */
export function gnpTypes(g: GlobalNetworkPolicyObject): { ingress: boolean; egress: boolean } {
  const t = g.spec.types;
  if (t && t.length > 0) return { ingress: t.includes("Ingress"), egress: t.includes("Egress") };
  const hasIn = (g.spec.ingress?.length ?? 0) > 0;
  const hasEg = (g.spec.egress?.length ?? 0) > 0;
  return { ingress: hasIn || !hasEg, egress: hasEg };
}

// ---- NetworkSet / GlobalNetworkSet (sluice.dev/v1) ----

const MAX_SET_NETS = 10_000;
const networkSetSpec = z.object({ nets: z.array(cidr43).max(MAX_SET_NETS, `must have at most ${MAX_SET_NETS} items`).optional() }).strict();

export const networkSetObject = nullsAsTheApiServerReadsThem(
  z.object({
    ...typeMeta(SLUICE_V1, "NetworkSet"),
    metadata: objectMeta.extend({ namespace: dns1123Label.default("default") }),
    spec: networkSetSpec.default({}),
  }),
);
export type NetworkSetObject = z.infer<typeof networkSetObject>;

export const globalNetworkSetObject = nullsAsTheApiServerReadsThem(
  z.object({
    ...typeMeta(SLUICE_V1, "GlobalNetworkSet"),
    metadata: objectMeta,
    spec: networkSetSpec.default({}),
  }),
);
export type GlobalNetworkSetObject = z.infer<typeof globalNetworkSetObject>;

// ---- Node (core v1; read, not authored) ----

export const nodeObject = z
  .object({
    ...typeMeta("v1", "Node"),
    metadata: objectMeta.extend({ name: dns1123Subdomain, labels: labels.optional() }).loose(),
    spec: z.object({ podCIDR: cidrText.optional(), podCIDRs: z.array(cidrText).max(2, "must have at most 2 items (one per family)").optional() }).loose().default({}),
    status: z
      .object({
        addresses: z.array(z.object({ type: z.string(), address: z.string() }).loose()).optional(),
        conditions: z.array(z.object({ type: z.string(), status: z.string() }).loose()).optional(),
      })
      .loose()
      .optional(),
  })
  .loose();
export type NodeObject = z.infer<typeof nodeObject>;

/**
 * A Node without the InternalIP / ExternalIP addresses no host may have (not an IP
 * address, or 0.0.0.0, ::, loopback, multicast: hostAddressProblem), each named in
 * `dropped`. The Node stays, with its labels and its other addresses (what `nodes` peers
 * match): dropping the object would open what a Deny of its addresses closes.
 */
export function withoutUnusableNodeAddresses(n: NodeObject): { object: NodeObject; dropped: DroppedValue[] } {
  const addresses = n.status?.addresses;
  if (!addresses) return { object: n, dropped: [] };
  const dropped: DroppedValue[] = [];
  const kept = addresses.filter((a, i) => {
    if (a.type !== "InternalIP" && a.type !== "ExternalIP") return true;
    const problem = hostAddressProblem(a.address);
    if (problem !== undefined) dropped.push({ path: `status.addresses[${i}].address`, message: `${problem}; dropped` });
    return problem === undefined;
  });
  return dropped.length ? { object: { ...n, status: { ...n.status, addresses: kept } }, dropped } : { object: n, dropped };
}
