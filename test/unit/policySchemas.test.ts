import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv, { type ValidateFunction } from "ajv";
import { parse } from "yaml";
import { type ResourceKind, clusterNetworkPolicyKind, globalNetworkPolicyKind, globalNetworkSetKind, kindFor, networkSetKind, nodeKind, resolveKindName, validateObject } from "../../src/config/resourceKinds.js";
import { gnpTypes } from "../../src/config/policySchemas.js";
import type { GlobalNetworkPolicyObject } from "../../src/config/policySchemas.js";
import { parseManifests } from "../../src/ctl/manifests.js";
import { packageRoot } from "../../src/sandbox/paths.js";

type Json = Record<string, unknown>;
const clone = <T>(x: T): T => structuredClone(x);
/** `path: message` of every issue, or [] when valid. */
const problems = (kind: ResourceKind, o: unknown): string[] => {
  const r = validateObject(kind, o);
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
};
/** Asserts that exactly one issue names `path` and its message matches `why`. */
function rejects(kind: ResourceKind, o: unknown, path: string, why: RegExp): void {
  const p = problems(kind, o);
  const hit = p.filter((x) => x.startsWith(`${path}: `));
  assert.equal(hit.length, 1, `expected one problem at ${path}, got ${JSON.stringify(p)}`);
  assert.match(hit[0] as string, why);
}

const fixture = readFileSync(join(packageRoot(), "test", "fixtures", "policy-kinds.yaml"), "utf8");
const examples = parseManifests([{ name: "policy-kinds.yaml", text: fixture }], { validate: true });
const rawExamples = parseManifests([{ name: "policy-kinds.yaml", text: fixture }], { validate: false });
/** An example as written (not defaulted by zod). */
const example = (kind: string, name: string): Json => {
  const o = rawExamples.objects.find((x) => x.kind.kind === kind && x.name === name);
  assert.ok(o, `${kind} ${name} in the fixture`);
  return clone(o.object as unknown as Json);
};

const cnp = (spec: Json): Json => ({ apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: { name: "p" }, spec });
const gnp = (spec: Json): Json => ({ apiVersion: "sluice.dev/v1", kind: "GlobalNetworkPolicy", metadata: { name: "g" }, spec });
const ADMIN = { tier: "Admin", priority: 10, subject: { namespaces: {} } };
const egressTo = (to: unknown[], extra: Json = {}): Json => cnp({ ...ADMIN, egress: [{ action: "Deny", to, ...extra }] });
const tcp = (destinationPort: Json): Json => ({ tcp: { destinationPort } });
const gnpIn = (rule: Json): Json => gnp({ ingress: [{ action: "Allow", ...rule }] });

describe("the object shapes on the board", () => {
  test("every example validates, one of each kind", () => {
    assert.deepEqual(examples.problems, []);
    assert.deepEqual(
      examples.objects.map((o) => `${o.kind.kind} ${o.namespace ?? "-"}/${o.name}`),
      ["ClusterNetworkPolicy -/tenant-blue", "ClusterNetworkPolicy -/baseline-tenants", "GlobalNetworkPolicy -/web-corp", "NetworkSet blue/partners", "GlobalNetworkSet -/corporate", "Node -/node-1"],
    );
  });

  test("kinds resolve by kubectl-like names", () => {
    for (const [name, kind] of [
      ["cnp", "ClusterNetworkPolicy"],
      ["clusternetworkpolicies.policy.networking.k8s.io", "ClusterNetworkPolicy"],
      ["gnp", "GlobalNetworkPolicy"],
      ["netsets", "NetworkSet"],
      ["networkset", "NetworkSet"],
      ["globalnetsets", "GlobalNetworkSet"],
      ["no", "Node"],
      ["nodes", "Node"],
    ]) assert.equal(resolveKindName(name as string)?.kind, kind, name);
    assert.equal(kindFor("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy"), clusterNetworkPolicyKind);
    assert.equal(kindFor("sluice.dev/v1", "GlobalNetworkSet"), globalNetworkSetKind);
  });
});

describe("ClusterNetworkPolicy schema", () => {
  test("priority, tier and subject", () => {
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, priority: 1001 }), "spec.priority", /between 0 and 1000/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, priority: 2.5 }), "spec.priority", /integer/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, tier: "admin" }), "spec.tier", /Admin or Baseline/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, subject: {} }), "spec.subject", /exactly one of namespaces, pods/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, subject: { namespaces: {}, pods: { podSelector: {} } } }), "spec.subject.pods", /may not be combined with namespaces/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, subject: { pods: { namespaceSelector: {} } } }), "spec.subject.pods.podSelector", /is required/);
    rejects(clusterNetworkPolicyKind, cnp({ tier: "Admin", subject: { namespaces: {} } }), "spec.priority", /is required/);
  });

  test("rules and peers", () => {
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, ingress: [{ action: "Allow", from: [{ namespaces: {} }] }] }), "spec.ingress[0].action", /Accept, Deny or Pass/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, ingress: [{ action: "Deny", from: [] }] }), "spec.ingress[0].from", /at least 1/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, ingress: [{ action: "Deny", from: [{ networks: ["10.0.0.0/8"] }] }] }), "spec.ingress[0].from[0].networks", /unknown field/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, ingress: [{ action: "Deny", name: "x".repeat(101), from: [{ namespaces: {} }] }] }), "spec.ingress[0].name", /at most 100/);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, ingress: Array.from({ length: 26 }, () => ({ action: "Deny", from: [{ namespaces: {} }] })) }), "spec.ingress", /at most 25 rules/);
    rejects(clusterNetworkPolicyKind, egressTo([{ pods: { podSelector: {} }, networks: ["10.0.0.0/8"] }]), "spec.egress[0].to[0].networks", /may not be combined with pods/);
    rejects(clusterNetworkPolicyKind, egressTo([{}]), "spec.egress[0].to[0]", /exactly one of namespaces, pods, nodes, networks, domainNames/);
    rejects(clusterNetworkPolicyKind, egressTo([{ networks: ["10.0.0.0/8", "10.0.0.300/32"] }]), "spec.egress[0].to[0].networks[1]", /must be a CIDR/);
    rejects(clusterNetworkPolicyKind, egressTo([{ networks: ["10.0.0.0/8", "10.0.0.0/8"] }]), "spec.egress[0].to[0].networks[1]", /duplicate CIDR/);
    rejects(clusterNetworkPolicyKind, egressTo([{ networks: Array.from({ length: 26 }, (_, i) => `10.${i}.0.0/16`) }]), "spec.egress[0].to[0].networks", /at most 25/);
    rejects(clusterNetworkPolicyKind, egressTo([{ domainNames: ["example.com"] }]), "spec.egress[0].to[0].domainNames", /only allowed in Accept rules/);
    rejects(clusterNetworkPolicyKind, egressTo([{ domainNames: ["-bad-.com"] }], { action: "Accept" }), "spec.egress[0].to[0].domainNames[0]", /domain name/);
    assert.deepEqual(problems(clusterNetworkPolicyKind, egressTo([{ domainNames: ["*.example.com"] }], { action: "Accept" })), []);
  });

  test("protocols and ports", () => {
    const withProtocols = (protocols: unknown[], to: unknown[] = [{ namespaces: {} }]) => egressTo(to, { protocols });
    rejects(clusterNetworkPolicyKind, withProtocols([]), "spec.egress[0].protocols", /at least 1/);
    rejects(clusterNetworkPolicyKind, withProtocols([{}]), "spec.egress[0].protocols[0]", /exactly one of tcp, udp, sctp, destinationNamedPort/);
    rejects(clusterNetworkPolicyKind, withProtocols([{ tcp: tcp({ number: 1 }).tcp, udp: tcp({ number: 1 }).tcp }]), "spec.egress[0].protocols[0].udp", /may not be combined with tcp/);
    rejects(clusterNetworkPolicyKind, withProtocols([{ tcp: {} }]), "spec.egress[0].protocols[0].tcp.destinationPort", /is required/);
    rejects(clusterNetworkPolicyKind, withProtocols([tcp({ number: 0 })]), "spec.egress[0].protocols[0].tcp.destinationPort.number", /between 1 and 65535/);
    rejects(clusterNetworkPolicyKind, withProtocols([tcp({ number: 80, range: { start: 1, end: 2 } })]), "spec.egress[0].protocols[0].tcp.destinationPort.range", /may not be combined with number/);
    rejects(clusterNetworkPolicyKind, withProtocols([tcp({ range: { start: 80, end: 80 } })]), "spec.egress[0].protocols[0].tcp.destinationPort.range.end", /greater than start \(80\)/);
    rejects(clusterNetworkPolicyKind, withProtocols([{ destinationNamedPort: "HTTP" }]), "spec.egress[0].protocols[0].destinationNamedPort", /port name/);
    rejects(clusterNetworkPolicyKind, withProtocols([{ destinationNamedPort: "http" }], [{ nodes: {} }]), "spec.egress[0].protocols[0].destinationNamedPort", /networks, nodes or domainNames/);
    assert.deepEqual(problems(clusterNetworkPolicyKind, withProtocols([{ destinationNamedPort: "http" }, { sctp: { destinationPort: { range: { start: 1, end: 2 } } } }])), []);
  });

  test("status conditions are accepted; unknown spec fields are not", () => {
    assert.deepEqual(problems(clusterNetworkPolicyKind, { ...cnp(ADMIN), status: { conditions: [{ type: "Ready", status: "True", reason: "Programmed", message: "", lastTransitionTime: "2025-01-01T00:00:00Z" }] } }), []);
    rejects(clusterNetworkPolicyKind, cnp({ ...ADMIN, sameLabels: ["tenant"] }), "spec.sameLabels", /unknown field/);
  });
});

describe("GlobalNetworkPolicy schema", () => {
  test("order, types, actions, protocols", () => {
    assert.deepEqual(problems(globalNetworkPolicyKind, gnp({})), [], "every field is optional");
    assert.deepEqual(problems(globalNetworkPolicyKind, gnp({ order: 2.5 })), [], "order is a float, as in Calico");
    rejects(globalNetworkPolicyKind, gnp({ order: -1 }), "spec.order", /between 0 and 1000000000/);
    rejects(globalNetworkPolicyKind, gnp({ types: ["Ingress", "Ingress"] }), "spec.types[1]", /duplicate type/);
    rejects(globalNetworkPolicyKind, gnp({ types: ["Forward"] }), "spec.types[0]", /Ingress or Egress/);
    rejects(globalNetworkPolicyKind, gnpIn({ action: "Accept" }), "spec.ingress[0].action", /Allow, Deny, Pass or Log/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "tcp" }), "spec.ingress[0].protocol", /TCP, UDP, SCTP, ICMP or ICMPv6/);
    rejects(globalNetworkPolicyKind, { apiVersion: "crd.projectcalico.org/v1", kind: "GlobalNetworkPolicy", metadata: { name: "g" }, spec: {} }, "apiVersion", /sluice\.dev\/v1/);
  });

  test("ports need a port protocol; icmp needs ICMP; named ports only at the destination", () => {
    rejects(globalNetworkPolicyKind, gnpIn({ destination: { ports: [80] } }), "spec.ingress[0].destination.ports", /needs protocol TCP, UDP or SCTP/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "ICMP", source: { notPorts: [80] } }), "spec.ingress[0].source.notPorts", /needs protocol TCP, UDP or SCTP/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "UDP", icmp: { type: 8 } }), "spec.ingress[0].icmp", /needs protocol ICMP or ICMPv6/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "ICMP", icmp: { code: 0 } }), "spec.ingress[0].icmp.code", /only be set with type/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "ICMP", icmp: { type: 255 } }), "spec.ingress[0].icmp.type", /between 0 and 254/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "TCP", destination: { ports: [0] } }), "spec.ingress[0].destination.ports[0]", /between 1 and 65535/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "TCP", destination: { ports: ["90:80"] } }), "spec.ingress[0].destination.ports[0]", /start <= end/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "TCP", destination: { ports: ["80"] } }), "spec.ingress[0].destination.ports[0]", /not a port number, a range/);
    rejects(globalNetworkPolicyKind, gnpIn({ protocol: "TCP", source: { ports: ["http"] } }), "spec.ingress[0].source.ports[0]", /only allowed in destination ports/);
    assert.deepEqual(problems(globalNetworkPolicyKind, gnpIn({ protocol: "TCP", source: { ports: ["1024:65535"] }, destination: { ports: [80, "8000:8080", "http"], notPorts: [8001] } })), []);
    assert.deepEqual(problems(globalNetworkPolicyKind, gnpIn({ protocol: "ICMPv6", icmp: { type: 128 } })), []);
  });

  test("entity rules: nets are CIDRs, unknown fields are refused", () => {
    rejects(globalNetworkPolicyKind, gnpIn({ source: { nets: ["10.1.2.3"] } }), "spec.ingress[0].source.nets[0]", /must be a CIDR/);
    rejects(globalNetworkPolicyKind, gnpIn({ source: { serviceAccounts: {} } }), "spec.ingress[0].source.serviceAccounts", /unknown field/);
    rejects(globalNetworkPolicyKind, gnpIn({ source: { selector: { matchExpressions: [{ key: "a", operator: "In" }] } } }), "spec.ingress[0].source.selector.matchExpressions[0].values", /non-empty/);
  });

  test("types default like Calico", () => {
    const types = (spec: Json) => gnpTypes(validateObject(globalNetworkPolicyKind, gnp(spec)).ok ? ((validateObject(globalNetworkPolicyKind, gnp(spec)) as { object: GlobalNetworkPolicyObject }).object) : assert.fail("invalid"));
    assert.deepEqual(types({}), { ingress: true, egress: false });
    assert.deepEqual(types({ egress: [{ action: "Allow" }] }), { ingress: false, egress: true });
    assert.deepEqual(types({ ingress: [{ action: "Allow" }], egress: [{ action: "Allow" }] }), { ingress: true, egress: true });
    assert.deepEqual(types({ types: ["Egress"], ingress: [{ action: "Allow" }] }), { ingress: false, egress: true });
  });
});

describe("NetworkSet, GlobalNetworkSet and Node schemas", () => {
  test("sets: nets are CIDRs; spec defaults to empty; NetworkSet defaults to the default namespace", () => {
    const set = (kind: string, spec?: Json): Json => ({ apiVersion: "sluice.dev/v1", kind, metadata: { name: "s" }, ...(spec ? { spec } : {}) });
    const v = validateObject(networkSetKind, set("NetworkSet"));
    assert.ok(v.ok);
    assert.deepEqual([v.object.metadata.namespace, v.object.spec], ["default", {}]);
    rejects(networkSetKind, set("NetworkSet", { nets: ["10.0.0.0/8", "nope"] }), "spec.nets[1]", /must be a CIDR/);
    rejects(globalNetworkSetKind, set("GlobalNetworkSet", { nets: ["10.0.0.0/8"], allowedEgressDomains: ["x.com"] }), "spec.allowedEgressDomains", /unknown field/);
    assert.deepEqual(problems(globalNetworkSetKind, set("GlobalNetworkSet", { nets: ["10.0.0.1/8", "2001:db8::/32"] })), [], "host bits are accepted, as in NetworkPolicy ipBlock");
  });

  test("a Node as kubectl prints it is accepted whole; podCIDR and addresses are checked", () => {
    const real = {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: "worker-1.example.com",
        uid: "5a3f",
        resourceVersion: "123",
        creationTimestamp: "2025-01-01T00:00:00Z",
        labels: { "kubernetes.io/hostname": "worker-1", "kubernetes.io/os": "linux" },
        annotations: { "flannel.alpha.coreos.com/public-ip": "192.168.1.10", "node.alpha.kubernetes.io/ttl": "0" },
        managedFields: [{ manager: "kubelet", operation: "Update" }],
      },
      spec: { podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24", "fd00:1::/64"], providerID: "kind://x", taints: [{ key: "k", effect: "NoSchedule" }] },
      status: {
        addresses: [
          { type: "InternalIP", address: "192.168.1.10" },
          { type: "Hostname", address: "worker-1" },
        ],
        conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", lastHeartbeatTime: "2025-01-01T00:00:00Z" }],
        capacity: { cpu: "2" },
        nodeInfo: { kubeletVersion: "v1.31.0" },
        daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      },
    };
    const v = validateObject(nodeKind, real);
    assert.ok(v.ok, JSON.stringify(v));
    assert.deepEqual(v.object, real, "nothing dropped");
    rejects(nodeKind, { ...real, spec: { podCIDR: "10.244.1.0" } }, "spec.podCIDR", /must be a CIDR/);
    rejects(nodeKind, { ...real, status: { addresses: [{ type: "InternalIP" }] } }, "status.addresses[0].address", /is required/);
    rejects(nodeKind, { ...real, metadata: { ...real.metadata, name: "Worker_1" } }, "metadata.name", /DNS-1123 subdomain/);
  });
});

// ---- zod and the CRDs agree ----

/**
 * What the API server does to a custom resource before validating it: a null value of a
 * field that is not `nullable` (none of ours is) is pruned, as if absent. Items of a list stay.
 */
function pruneNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(pruneNulls);
  if (typeof v !== "object" || v === null) return v;
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, pruneNulls(x)]));
}

/**
 * The CRD's openAPIV3Schema as ajv sees it, with kubectl's strict field validation
 * (unknown fields are errors: additionalProperties false wherever properties are listed).
 * ajv ignores the x-kubernetes-* keywords, so CEL rules (x-kubernetes-validations), list
 * types (`set`: no duplicates) and what the API server checks by itself are left to zod:
 * samples that only those catch say so.
 */
function crdValidator(file: string): ValidateFunction {
  const crd = parse(readFileSync(join(packageRoot(), "crds", file), "utf8")) as { spec: { versions: { schema: { openAPIV3Schema: Json } }[] } };
  const schema = clone(crd.spec.versions[0]?.schema.openAPIV3Schema as Json);
  const closeObjects = (s: unknown): void => {
    if (Array.isArray(s)) return s.forEach(closeObjects);
    if (typeof s !== "object" || s === null) return;
    const o = s as Json;
    if (o["properties"] !== undefined && o["additionalProperties"] === undefined && o["x-kubernetes-preserve-unknown-fields"] !== true) o["additionalProperties"] = false;
    for (const v of Object.values(o)) closeObjects(v);
  };
  closeObjects(schema);
  return new Ajv({ strict: false, validateFormats: false, allErrors: true }).compile(schema);
}

/** Why only zod (and the API server's CEL / list-type checks) refuses a sample. */
type ZodOnly = "CEL" | "list-type set" | "label selector syntax (API server)";
interface Sample {
  what: string;
  object: Json;
  valid: boolean;
  zodOnly?: ZodOnly;
}

const CNP_SAMPLES = (): Sample[] => {
  const admin = example("ClusterNetworkPolicy", "tenant-blue");
  const withSpec = (f: (spec: Json) => void): Json => {
    const o = clone(admin);
    f(o["spec"] as Json);
    return o;
  };
  const rule0 = (spec: Json, dir: "ingress" | "egress"): Json => (spec[dir] as Json[])[0] as Json;
  return [
    { what: "the Admin example", object: admin, valid: true },
    { what: "the Baseline example", object: example("ClusterNetworkPolicy", "baseline-tenants"), valid: true },
    { what: "pods subject without namespaceSelector", object: cnp({ ...ADMIN, subject: { pods: { podSelector: { matchLabels: { app: "web" } } } } }), valid: true },
    { what: "domainNames in an Accept rule", object: egressTo([{ domainNames: ["*.example.com"] }], { action: "Accept" }), valid: true },
    { what: "sctp range and a udp number", object: egressTo([{ namespaces: {} }], { protocols: [{ sctp: { destinationPort: { range: { start: 1, end: 9 } } } }, { udp: { destinationPort: { number: 53 } } }] }), valid: true },
    { what: "a null namespaceSelector, matchLabels and protocols (pruned: absent)", object: cnp({ ...ADMIN, subject: { pods: { namespaceSelector: null, podSelector: { matchLabels: null, matchExpressions: [{ key: "a", operator: "Exists", values: null }] } } }, ingress: [{ action: "Deny", from: [{ namespaces: {} }], protocols: null }] }), valid: true },
    { what: "a null egress list and a null rule name", object: cnp({ ...ADMIN, egress: null, ingress: [{ name: null, action: "Pass", from: [{ pods: { podSelector: {} } }] }] }), valid: true },
    { what: "priority 1001", object: withSpec((s) => (s["priority"] = 1001)), valid: false },
    { what: "priority -1", object: withSpec((s) => (s["priority"] = -1)), valid: false },
    { what: "priority 1.5", object: withSpec((s) => (s["priority"] = 1.5)), valid: false },
    { what: "tier admin (lower case)", object: withSpec((s) => (s["tier"] = "admin")), valid: false },
    { what: "no tier", object: withSpec((s) => delete s["tier"]), valid: false },
    { what: "no spec", object: { apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: { name: "p" } }, valid: false },
    { what: "empty subject", object: withSpec((s) => (s["subject"] = {})), valid: false },
    { what: "a null subject selector (pruned: an empty subject)", object: withSpec((s) => (s["subject"] = { namespaces: null })), valid: false },
    { what: "a null podSelector of pods (pruned: missing)", object: withSpec((s) => (s["subject"] = { pods: { podSelector: null } })), valid: false },
    { what: "a null nodes peer (pruned: an empty peer)", object: egressTo([{ nodes: null }]), valid: false },
    { what: "subject with namespaces and pods", object: withSpec((s) => (s["subject"] = { namespaces: {}, pods: { podSelector: {} } })), valid: false },
    { what: "pods without podSelector", object: withSpec((s) => (s["subject"] = { pods: { namespaceSelector: {} } })), valid: false },
    { what: "unknown spec field", object: withSpec((s) => (s["sameLabels"] = ["tenant"])), valid: false },
    { what: "action Allow", object: withSpec((s) => (rule0(s, "ingress")["action"] = "Allow")), valid: false },
    { what: "rule without from", object: withSpec((s) => delete rule0(s, "ingress")["from"]), valid: false },
    { what: "empty from", object: withSpec((s) => (rule0(s, "ingress")["from"] = [])), valid: false },
    { what: "networks in an ingress peer", object: withSpec((s) => (rule0(s, "ingress")["from"] = [{ networks: ["10.0.0.0/8"] }])), valid: false },
    { what: "rule name of 101 characters", object: withSpec((s) => (rule0(s, "ingress")["name"] = "n".repeat(101))), valid: false },
    { what: "26 ingress rules", object: withSpec((s) => (s["ingress"] = Array.from({ length: 26 }, () => clone(rule0(s, "ingress"))))), valid: false },
    { what: "egress peer with pods and networks", object: egressTo([{ pods: { podSelector: {} }, networks: ["10.0.0.0/8"] }]), valid: false },
    { what: "empty egress peer", object: egressTo([{}]), valid: false },
    { what: "26 networks", object: egressTo([{ networks: Array.from({ length: 26 }, (_, i) => `10.${i}.0.0/16`) }]), valid: false },
    { what: "empty networks", object: egressTo([{ networks: [] }]), valid: false },
    { what: "tcp without destinationPort", object: egressTo([{ namespaces: {} }], { protocols: [{ tcp: {} }] }), valid: false },
    { what: "tcp and udp in one protocol", object: egressTo([{ namespaces: {} }], { protocols: [{ ...tcp({ number: 1 }), udp: { destinationPort: { number: 1 } } }] }), valid: false },
    { what: "number and range in one port", object: egressTo([{ namespaces: {} }], { protocols: [tcp({ number: 1, range: { start: 1, end: 2 } })] }), valid: false },
    { what: "port 70000", object: egressTo([{ namespaces: {} }], { protocols: [tcp({ range: { start: 1, end: 70000 } })] }), valid: false },
    { what: "named port in upper case", object: egressTo([{ namespaces: {} }], { protocols: [{ destinationNamedPort: "HTTP" }] }), valid: false },
    { what: "selector operator Equals", object: cnp({ ...ADMIN, subject: { namespaces: { matchExpressions: [{ key: "a", operator: "Equals", values: ["b"] }] } } }), valid: false },
    { what: "label value with a space", object: cnp({ ...ADMIN, subject: { namespaces: { matchLabels: { a: "b c" } } } }), valid: false },
    { what: "a CIDR with a /33", object: egressTo([{ networks: ["10.0.0.0/33"] }]), valid: false, zodOnly: "CEL" },
    { what: "a range with start = end", object: egressTo([{ namespaces: {} }], { protocols: [tcp({ range: { start: 80, end: 80 } })] }), valid: false, zodOnly: "CEL" },
    { what: "a named port with a nodes peer", object: egressTo([{ nodes: {} }], { protocols: [{ destinationNamedPort: "http" }] }), valid: false, zodOnly: "CEL" },
    { what: "domainNames in a Deny rule", object: egressTo([{ domainNames: ["example.com"] }]), valid: false, zodOnly: "CEL" },
    { what: "a named port of digits only", object: egressTo([{ namespaces: {} }], { protocols: [{ destinationNamedPort: "8080" }] }), valid: false, zodOnly: "CEL" },
    { what: "a CIDR twice", object: egressTo([{ networks: ["10.0.0.0/8", "10.0.0.0/8"] }]), valid: false, zodOnly: "list-type set" },
    { what: "In without values", object: cnp({ ...ADMIN, subject: { namespaces: { matchExpressions: [{ key: "a", operator: "In" }] } } }), valid: false, zodOnly: "label selector syntax (API server)" },
    { what: "a label key with a space", object: cnp({ ...ADMIN, subject: { namespaces: { matchLabels: { "a b": "c" } } } }), valid: false, zodOnly: "label selector syntax (API server)" },
  ];
};

const GNP_SAMPLES = (): Sample[] => {
  const ex = example("GlobalNetworkPolicy", "web-corp");
  const rule = (r: Json): Json => gnpIn(r);
  return [
    { what: "the example", object: ex, valid: true },
    { what: "an empty spec", object: gnp({}), valid: true },
    { what: "a float order", object: gnp({ order: 2.5 }), valid: true },
    { what: "ports of every form", object: rule({ protocol: "TCP", source: { ports: ["1024:65535"] }, destination: { ports: [80, "8000:8080", "http"], notPorts: [8001] } }), valid: true },
    { what: "ICMPv6 with a type", object: rule({ protocol: "ICMPv6", icmp: { type: 128 } }), valid: true },
    { what: "selector, namespaceSelector, nets and notNets together", object: rule({ source: { selector: { matchLabels: { a: "b" } }, namespaceSelector: {}, nets: ["10.0.0.0/8"], notNets: ["10.1.0.0/16"] } }), valid: true },
    { what: "null selectors and a null order (pruned: absent)", object: gnp({ order: null, selector: null, namespaceSelector: { matchLabels: null }, ingress: [{ action: "Allow", source: { selector: null, nets: null } }] }), valid: true },
    { what: "no spec", object: { apiVersion: "sluice.dev/v1", kind: "GlobalNetworkPolicy", metadata: { name: "g" } }, valid: false },
    { what: "order -1", object: gnp({ order: -1 }), valid: false },
    { what: "order over 1e9", object: gnp({ order: 1_000_000_001 }), valid: false },
    { what: "types Forward", object: gnp({ types: ["Forward"] }), valid: false },
    { what: "three types", object: gnp({ types: ["Ingress", "Egress", "Ingress"] }), valid: false },
    { what: "action Accept", object: rule({ action: "Accept" }), valid: false },
    { what: "rule without action", object: gnp({ ingress: [{ protocol: "TCP" }] }), valid: false },
    { what: "protocol tcp (lower case)", object: rule({ protocol: "tcp" }), valid: false },
    { what: "icmp type 255", object: rule({ protocol: "ICMP", icmp: { type: 255 } }), valid: false },
    { what: "port 0", object: rule({ protocol: "TCP", destination: { ports: [0] } }), valid: false },
    { what: "port 70000", object: rule({ protocol: "TCP", destination: { ports: [70000] } }), valid: false },
    { what: "port name in upper case", object: rule({ protocol: "TCP", destination: { ports: ["Http"] } }), valid: false },
    { what: "a port list of an object", object: rule({ protocol: "TCP", destination: { ports: [{ port: 80 }] } }), valid: false },
    { what: "unknown entity field", object: rule({ source: { serviceAccounts: {} } }), valid: false },
    { what: "257 nets", object: rule({ source: { nets: Array.from({ length: 257 }, (_, i) => `10.${i % 256}.${i >> 8}.0/24`) } }), valid: false },
    { what: "ports without protocol", object: rule({ destination: { ports: [80] } }), valid: false, zodOnly: "CEL" },
    { what: "ports with protocol ICMP", object: rule({ protocol: "ICMP", destination: { ports: [80] } }), valid: false, zodOnly: "CEL" },
    { what: "icmp without protocol", object: rule({ icmp: { type: 8 } }), valid: false, zodOnly: "CEL" },
    { what: "icmp code without type", object: rule({ protocol: "ICMP", icmp: { code: 0 } }), valid: false, zodOnly: "CEL" },
    { what: "a numeric string port", object: rule({ protocol: "TCP", destination: { ports: ["80"] } }), valid: false, zodOnly: "CEL" },
    { what: "a reversed range", object: rule({ protocol: "TCP", destination: { ports: ["90:80"] } }), valid: false, zodOnly: "CEL" },
    { what: "a named source port", object: rule({ protocol: "TCP", source: { ports: ["http"] } }), valid: false, zodOnly: "CEL" },
    { what: "a net without a prefix length", object: rule({ source: { nets: ["10.1.2.3"] } }), valid: false, zodOnly: "CEL" },
    { what: "a type twice", object: gnp({ types: ["Ingress", "Ingress"] }), valid: false, zodOnly: "list-type set" },
  ];
};

const SET_SAMPLES = (kind: "NetworkSet" | "GlobalNetworkSet"): Sample[] => {
  const ex = kind === "NetworkSet" ? example(kind, "partners") : example(kind, "corporate");
  const set = (spec?: unknown): Json => ({ apiVersion: "sluice.dev/v1", kind, metadata: { name: "s" }, ...(spec === undefined ? {} : { spec }) });
  return [
    { what: "the example", object: ex, valid: true },
    { what: "no spec", object: set(), valid: true },
    { what: "no nets", object: set({ nets: [] }), valid: true },
    { what: "null nets and null labels (pruned: absent)", object: { ...set({ nets: null }), metadata: { name: "s", labels: null } }, valid: true },
    { what: "a null spec (pruned: no spec)", object: { ...set(), spec: null }, valid: true },
    { what: "an unknown spec field", object: set({ allowedEgressDomains: ["x.com"] }), valid: false },
    { what: "nets not a list", object: set({ nets: "10.0.0.0/8" }), valid: false },
    { what: "a 44-character net", object: set({ nets: [`${"0000:".repeat(7)}00000/128`] }), valid: false },
    { what: "10001 nets", object: set({ nets: Array.from({ length: 10_001 }, (_, i) => `10.${i >> 8}.${i % 256}.0/24`) }), valid: false },
    { what: "a bad net", object: set({ nets: ["nope"] }), valid: false, zodOnly: "CEL" },
  ];
};

describe("zod and the CRDs agree on good and bad objects", () => {
  for (const [file, kind, samples] of [
    ["policy.networking.k8s.io_clusternetworkpolicies.yaml", clusterNetworkPolicyKind, CNP_SAMPLES],
    ["sluice.dev_globalnetworkpolicies.yaml", globalNetworkPolicyKind, GNP_SAMPLES],
    ["sluice.dev_networksets.yaml", networkSetKind, () => SET_SAMPLES("NetworkSet")],
    ["sluice.dev_globalnetworksets.yaml", globalNetworkSetKind, () => SET_SAMPLES("GlobalNetworkSet")],
  ] as const) {
    test(file, () => {
      const crd = crdValidator(file);
      const list = samples();
      const disagree: string[] = [];
      for (const s of list) {
        const zodOk = validateObject(kind as ResourceKind, s.object).ok;
        const crdOk = crd(pruneNulls(s.object));
        const crdExpected = s.zodOnly ? true : s.valid;
        if (zodOk !== s.valid) disagree.push(`${s.what}: zod says ${zodOk ? "valid" : "invalid"} (${problems(kind as ResourceKind, s.object).join("; ")})`);
        if (crdOk !== crdExpected) disagree.push(`${s.what}: the CRD schema says ${crdOk ? "valid" : `invalid (${JSON.stringify(crd.errors?.slice(0, 2))})`}${s.zodOnly ? ` (${s.zodOnly} only)` : ""}`);
      }
      assert.deepEqual(disagree, []);
      assert.ok(list.filter((s) => s.valid).length >= 3 && list.filter((s) => !s.valid && !s.zodOnly).length >= 3);
    });
  }

  test("the CRD schemas are structural and use only JSONSchemaProps fields", () => {
    const KEYS = new Set(
      "description type format title default maximum exclusiveMaximum minimum exclusiveMinimum maxLength minLength pattern maxItems minItems uniqueItems multipleOf enum maxProperties minProperties required items allOf oneOf anyOf not properties additionalProperties nullable x-kubernetes-preserve-unknown-fields x-kubernetes-embedded-resource x-kubernetes-int-or-string x-kubernetes-list-map-keys x-kubernetes-list-type x-kubernetes-map-type x-kubernetes-validations".split(" "),
    );
    const problemsOf = (node: Json, path: string, inJunctor: boolean): string[] => {
      const out: string[] = [];
      for (const k of Object.keys(node)) if (!KEYS.has(k)) out.push(`${path}: unknown field ${k}`);
      const intOrString = node["x-kubernetes-int-or-string"] === true;
      if (inJunctor) {
        for (const k of ["description", "default", "additionalProperties", "nullable"]) if (k in node) out.push(`${path}: ${k} inside anyOf/allOf/oneOf/not`);
      } else if (node["type"] === undefined && !intOrString && node["x-kubernetes-preserve-unknown-fields"] !== true) out.push(`${path}: no type`);
      if (node["uniqueItems"] === true) out.push(`${path}: uniqueItems may not be true`);
      if (node["properties"] !== undefined && node["additionalProperties"] !== undefined) out.push(`${path}: properties and additionalProperties together`);
      for (const r of (node["x-kubernetes-validations"] as Json[] | undefined) ?? []) if (typeof r["rule"] !== "string" || typeof r["message"] !== "string") out.push(`${path}: a validation rule needs rule and message`);
      for (const [k, v] of Object.entries((node["properties"] as Record<string, Json> | undefined) ?? {})) out.push(...problemsOf(v, `${path}.${k}`, inJunctor));
      for (const k of ["items", "additionalProperties", "not"]) if (typeof node[k] === "object") out.push(...problemsOf(node[k] as Json, `${path}.${k}`, inJunctor || k === "not"));
      for (const k of ["anyOf", "allOf", "oneOf"]) {
        const branches = (node[k] as Json[] | undefined) ?? [];
        // The one place a junctor may carry types: int-or-string's anyOf [{type: integer}, {type: string}].
        const intOrStringPattern = intOrString && k === "anyOf" && branches.length === 2 && branches.every((b) => Object.keys(b).length === 1) && branches[0]?.["type"] === "integer" && branches[1]?.["type"] === "string";
        if (!intOrStringPattern) branches.forEach((b, i) => out.push(...problemsOf(b, `${path}.${k}[${i}]`, true)));
      }
      return out;
    };
    for (const file of ["policy.networking.k8s.io_clusternetworkpolicies.yaml", "sluice.dev_globalnetworkpolicies.yaml", "sluice.dev_networksets.yaml", "sluice.dev_globalnetworksets.yaml"]) {
      const crd = parse(readFileSync(join(packageRoot(), "crds", file), "utf8")) as { apiVersion: string; spec: { versions: { served: boolean; storage: boolean; schema: { openAPIV3Schema: Json } }[] } };
      assert.equal(crd.apiVersion, "apiextensions.k8s.io/v1");
      assert.deepEqual(crd.spec.versions.map((v) => [v.served, v.storage]), [[true, true]]);
      assert.deepEqual(problemsOf(crd.spec.versions[0]?.schema.openAPIV3Schema as Json, file, false), []);
    }
  });

  test("the CRDs name the kinds as the registry does", () => {
    for (const [file, kind] of [
      ["policy.networking.k8s.io_clusternetworkpolicies.yaml", clusterNetworkPolicyKind],
      ["sluice.dev_globalnetworkpolicies.yaml", globalNetworkPolicyKind],
      ["sluice.dev_networksets.yaml", networkSetKind],
      ["sluice.dev_globalnetworksets.yaml", globalNetworkSetKind],
    ] as const) {
      const crd = parse(readFileSync(join(packageRoot(), "crds", file), "utf8")) as { metadata: { name: string }; spec: { group: string; scope: string; names: { kind: string; plural: string; singular: string; shortNames: string[] }; versions: { name: string; additionalPrinterColumns: unknown[] }[] } };
      const k = kind as ResourceKind;
      assert.equal(crd.metadata.name, `${k.plural}.${k.group}`);
      assert.deepEqual([crd.spec.group, crd.spec.names.kind, crd.spec.names.plural, crd.spec.names.singular, crd.spec.names.shortNames, crd.spec.scope], [k.group, k.kind, k.plural, k.singular, k.shortNames, k.namespaced ? "Namespaced" : "Cluster"]);
      assert.deepEqual(crd.spec.versions.map((v) => v.name), [k.version]);
      assert.ok(crd.spec.versions[0]?.additionalPrinterColumns.length);
    }
  });
});
