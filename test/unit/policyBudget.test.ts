/**
 * Issue 11, item 2 (a policy cannot stall the agent), the pure half: copies of peers,
 * ports and rules are removed before the renderer's products (the render equals that of
 * the policy written without them), and a policy that still expands to more than
 * MAX_POLICY_TERMS fails closed by itself, as policyBudget.ts's header says per tier.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { networkPolicyObject, type NetworkPolicyObject } from "../../src/config/k8sSchemas.js";
import { clusterNetworkPolicyObject, globalNetworkPolicyObject } from "../../src/config/policySchemas.js";
import type { KubeObject } from "../../src/config/resourceKinds.js";
import { type NamespaceInfo, type PodEndpoint, hostIfaceName } from "../../src/model/endpoint.js";
import { type Connection, PolicyEvaluator } from "../../src/policy/evaluate.js";
import type { Peer, PodSet, PolicyIR, PortSpec, RuleAction, RuleIR, Tier } from "../../src/policy/ir.js";
import { type PolicyModelInput, buildPolicyModel } from "../../src/policy/model.js";
import { DENY_EVERYTHING, MAX_POLICY_TERMS, boundPolicy, dedupePolicy, policyTerms, ruleTerms } from "../../src/policy/policyBudget.js";
import { renderPolicyModel } from "../../src/render/policy.js";
import type { PolicyRender } from "../../src/render/policyContract.js";
import { Node, type SimCluster, crossCheck } from "../helpers/policySim.js";

const NODE = "n1";
const namespaces: NamespaceInfo[] = [
  { name: "prod", labels: { team: "shop" } },
  { name: "dev", labels: { team: "shop" } },
];
const pod = (namespace: string, name: string, ip: string, labels: Record<string, string>): PodEndpoint => ({ namespace, pod: name, node: NODE, hostIface: hostIfaceName(namespace, name), ips: [ip], labels, ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }] });
const web = pod("prod", "web", "10.244.1.2", { app: "web" });
const client = pod("prod", "client", "10.244.1.3", { app: "client" });
const tool = pod("dev", "tool", "10.244.1.4", { app: "tool" });
const endpoints = [web, client, tool];

const np = (name: string, spec: unknown): NetworkPolicyObject => networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace: "prod" }, spec });
const HOST = "192.168.0.1";
const node = { apiVersion: "v1", kind: "Node", metadata: { name: NODE }, status: { addresses: [{ type: "InternalIP", address: HOST }] } } as KubeObject;
const input = (networkPolicies: NetworkPolicyObject[], objects: Record<string, KubeObject[]> = {}): PolicyModelInput => ({ endpoints, namespaces, networkPolicies, objects: { Node: [node], ...objects } });
const render = (i: PolicyModelInput): PolicyRender => renderPolicyModel({ family: 4, nodeName: NODE, model: buildPolicyModel(i), sctpSupported: true });
const tcp = (src: string, dst: string, port: number): Connection => ({ src, dst, protocol: "TCP", port });
const allowed = (i: PolicyModelInput, c: Connection): boolean => PolicyEvaluator.fromModel(buildPolicyModel(i), { sctpSupported: true }).evaluate(c).allowed;

/** n copies of each item, interleaved: [a, b, a, b, ...]. */
const copies = <T>(items: readonly T[], n: number): T[] => Array.from({ length: n * items.length }, (_, i) => items[i % items.length] as T);
/** Distinct /32 blocks and ports: `n` of each. */
const blocks = (n: number): unknown[] => Array.from({ length: n }, (_, i) => ({ ipBlock: { cidr: `198.18.${i >> 8}.${i & 255}/32` } }));
const portList = (n: number): unknown[] => Array.from({ length: n }, (_, i) => ({ port: 1000 + i }));

describe("dedupe: copies change nothing", () => {
  test("a NetworkPolicy with thousands of copies of its peers, ports and rules renders exactly as the one written once", () => {
    const peers = [{ podSelector: { matchLabels: { app: "client" } } }, { namespaceSelector: { matchLabels: { team: "shop" } }, podSelector: { matchLabels: { app: "tool" } } }, { ipBlock: { cidr: "192.0.2.0/24", except: ["192.0.2.128/25"] } }];
    const ports = [{ port: 80 }, { protocol: "UDP", port: 53 }, { port: "http" }, { port: 9000, endPort: 9100 }];
    const once = np("web", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: peers, ports }, { from: [peers[0]] }], egress: [{ to: peers, ports }] });
    // The same peers again in other spellings: equal only once translated (matchLabels as an In expression, keys reordered).
    const respelled = [{ podSelector: { matchExpressions: [{ key: "app", operator: "In", values: ["client"] }] } }, { podSelector: { matchLabels: { app: "tool" } }, namespaceSelector: { matchLabels: { team: "shop" } } }];
    const many = np("web", {
      podSelector: { matchLabels: { app: "web" } },
      ingress: copies([{ from: [...copies(peers, 2000), ...copies(respelled, 500)], ports: copies(ports, 2000) }, { from: copies([peers[0]], 50) }], 20),
      egress: [{ to: copies(peers, 300), ports: copies(ports, 300) }],
    });
    const model = buildPolicyModel(input([many]));
    const shape = (rules: RuleIR[] | undefined): unknown => rules?.map((r) => [r.peers.length, r.ports === "all" ? "all" : r.ports.length]);
    assert.deepEqual([shape(model.policies[0]?.ingress), shape(model.policies[0]?.egress)], [[[3, 4], [1, "all"]], [[3, 4]]], "the model holds each peer, port and rule once");
    assert.deepEqual(model.policies, buildPolicyModel(input([once])).policies);
    assert.deepEqual(render(input([many])), render(input([once])));
    assert.deepEqual(model.warnings, [], "nothing over the limit: no warning");
  });

  test("in the ordered tiers peers and ports are deduplicated, rules are kept (their order and log rules count)", () => {
    const subject: PodSet = { namespaces: { kind: "name", name: "prod" }, pods: {} };
    const a: Peer = { kind: "ipBlock", cidr: "192.0.2.0/24", except: [] };
    const p80: PortSpec = { kind: "range", protocol: "TCP", from: 80, to: 80 };
    const rule = (action: RuleAction, peers: Peer[], ports: PortSpec[]): RuleIR => ({ action, peers, ports });
    const ir: PolicyIR = { id: "cnp:x", tier: "admin", priority: 1, subject, ingress: [rule("log", [a, a], [p80, p80]), rule("log", [a], [p80]), rule("deny", [a, { kind: "allOf", peers: [a, a] }], [p80])], egress: undefined };
    const d = dedupePolicy(ir);
    assert.deepEqual(d.ingress, [rule("log", [a], [p80]), rule("log", [a], [p80]), rule("deny", [a], [p80])], "an allOf of one peer is that peer, then a copy of the first");
  });

  test("a ClusterNetworkPolicy and a GlobalNetworkPolicy with repeated peers and ports render as without the repeats", () => {
    const cnp = (from: unknown[], protocols: unknown[]): KubeObject =>
      clusterNetworkPolicyObject.parse({ apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: { name: "c" }, spec: { tier: "Admin", priority: 5, subject: { namespaces: {} }, ingress: [{ action: "Deny", from, protocols }] } }) as KubeObject;
    const gnp = (ports: unknown[]): KubeObject => globalNetworkPolicyObject.parse({ apiVersion: "sluice.dev/v1", kind: "GlobalNetworkPolicy", metadata: { name: "g" }, spec: { order: 1, ingress: [{ action: "Allow", protocol: "TCP", destination: { ports } }] } }) as KubeObject;
    const peers = [{ namespaces: { matchLabels: { team: "shop" } } }, { pods: { podSelector: { matchLabels: { app: "tool" } } } }];
    const protocols = [{ tcp: { destinationPort: { number: 22 } } }, { udp: { destinationPort: { range: { start: 5000, end: 5100 } } } }];
    const once = input([], { ClusterNetworkPolicy: [cnp(peers, protocols)], GlobalNetworkPolicy: [gnp([80, "8000:8100"])] });
    const repeated = input([], { ClusterNetworkPolicy: [cnp(copies(peers, 12), copies(protocols, 12))], GlobalNetworkPolicy: [gnp(copies([80, "8000:8100"], 32))] });
    assert.deepEqual(render(repeated), render(once));
  });
});

describe("budget: what a rule and a policy cost", () => {
  test("terms: peers (allOf parts counted) x own-side peers x ports x source ports, times one plus the exclusions; at least 1", () => {
    const a: Peer = { kind: "any" };
    const port: PortSpec = { kind: "protocol", protocol: "TCP" };
    assert.equal(ruleTerms({ action: "allow", peers: [a, a, a], ports: [port, port] }), 6);
    assert.equal(ruleTerms({ action: "allow", peers: [{ kind: "allOf", peers: [a, a] }], ports: "all", notPorts: [port], srcPorts: [port, port] }), 2 * 2 * 2);
    assert.equal(ruleTerms({ action: "allow", peers: [a], ports: "all", self: { peers: [a, a], notPeers: [a] } }), 2 * 2);
    assert.equal(ruleTerms({ action: "allow", peers: [], ports: [] }), 1);
    const p: PolicyIR = { id: "x", tier: "namespace", priority: 0, subject: { namespaces: { kind: "name", name: "prod" }, pods: {} }, ingress: [{ action: "allow", peers: [a, a], ports: "all" }], egress: [{ action: "allow", peers: [a], ports: [port, port, port] }] };
    assert.equal(policyTerms(p), 5);
  });
});

describe("budget: a policy over the limit fails closed, that policy alone", () => {
  const over = Math.ceil(Math.sqrt(MAX_POLICY_TERMS)) + 1; // over^2 > MAX_POLICY_TERMS distinct terms

  test("a NetworkPolicy: the pods it selects stay isolated in its directions and none of its rules allow; other policies still do; a warning names it and its size", () => {
    const big = np("big", { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Ingress", "Egress"], ingress: [{ from: [{ podSelector: {} }, ...blocks(over)], ports: [{ port: 8080 }, ...portList(over)] }], egress: [{}] });
    const other = np("other", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ port: 9090 }] }] });
    const model = buildPolicyModel(input([big, other]));
    const ir = model.policies.find((p) => p.id === "prod/big");
    assert.deepEqual([ir?.ingress, ir?.egress], [[], []], "both directions kept, no rule left");
    assert.equal(model.warnings.length, 1);
    assert.match(model.warnings[0] as string, new RegExp(`^NetworkPolicy prod/big expands to ${((over + 1) * (over + 1) + 1).toLocaleString("en-US")} rule terms after removing duplicates, over the limit of ${MAX_POLICY_TERMS.toLocaleString("en-US")}: it fails closed: the pods it selects stay isolated for Ingress and Egress`));

    const i = input([big, other]);
    assert.equal(allowed(i, tcp(client.ips[0] as string, web.ips[0] as string, 8080)), false, "its allow of every pod on 8080 does not apply");
    assert.equal(allowed(i, tcp(client.ips[0] as string, web.ips[0] as string, 9090)), true, "the other policy's allow does");
    assert.equal(allowed(i, tcp(web.ips[0] as string, tool.ips[0] as string, 80)), false, "egress: its allow-all does not apply, the pod stays isolated");
    assert.equal(allowed(i, tcp(client.ips[0] as string, tool.ips[0] as string, 80)), true, "pods it does not select are not touched");
    // The chains say the same as the evaluator, packet by packet.
    const model2 = buildPolicyModel(i);
    const cl: SimCluster = { family: 4, endpoints, nodes: new Map([[NODE, new Node(NODE, render(i), 4)]]), hostIp: { [NODE]: { 4: HOST, 6: "fd99::1" } } };
    const probes = [8080, 9090, 80, 1000].map((port) => ({ protocol: "TCP" as const, port }));
    assert.ok(crossCheck(cl, PolicyEvaluator.fromModel(model2, { sctpSupported: true }), ["198.18.0.1"], probes) > 0);
  });

  test("under the limit nothing changes; a budget is per policy, so many policies near it all apply", () => {
    const near = Math.floor(Math.sqrt(MAX_POLICY_TERMS)) - 1;
    const policies = [1, 2, 3].map((k) => np(`near-${k}`, { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ podSelector: {} }, ...blocks(near - 1)], ports: [{ port: 8080 + k }, ...portList(near - 1)] }] }));
    const model = buildPolicyModel(input(policies));
    assert.deepEqual(model.warnings, []);
    for (const k of [1, 2, 3]) assert.equal(allowed(input(policies), tcp(client.ips[0] as string, web.ips[0] as string, 8080 + k)), true);
  });

  // The ordered tiers, on hand-made IR with a small limit: each rule costs its peers x ports.
  const subject: PodSet = { namespaces: { kind: "name", name: "prod" }, pods: { matchExpressions: [{ key: "app", operator: "In", values: ["web"] }] } };
  const fromClient: Peer = { kind: "pods", pods: { namespaces: { kind: "name", name: "prod" }, pods: { matchExpressions: [{ key: "app", operator: "In", values: ["client"] }] } } };
  const ports = (n: number, first = 1000): PortSpec[] => Array.from({ length: n }, (_, i) => ({ kind: "range", protocol: "TCP", from: first + i, to: first + i }));
  const rule = (action: RuleAction, label: string, ps: PortSpec[]): RuleIR => ({ action, label, peers: [fromClient], ports: ps });
  const cluster = (tier: Tier, rules: RuleIR[]): PolicyIR => ({ id: `cnp:${tier}`, tier, priority: 1, subject, ingress: rules, egress: undefined, origin: { kind: "ClusterNetworkPolicy", name: tier } });
  const verdict = (policies: PolicyIR[], port: number): boolean => {
    const model = buildPolicyModel(input([]));
    return PolicyEvaluator.fromModel({ ...model, policies }, { sctpSupported: true }).evaluate(tcp(client.ips[0] as string, web.ips[0] as string, port)).allowed;
  };
  const LIMIT = 10;

  test("an Admin policy: rules that fit stay; an Accept that does not fit is dropped (nothing granted), a later rule that fits still applies", () => {
    const p = cluster("admin", [rule("allow", "small", ports(2, 80)), rule("allow", "huge", ports(20, 1000)), rule("deny", "after", ports(1, 1005))]);
    const b = boundPolicy(p, LIMIT);
    assert.deepEqual(b.policy.ingress?.map((r) => r.label), ["small", "after"]);
    assert.equal(b.warning, "ClusterNetworkPolicy admin expands to 23 rule terms after removing duplicates, over the limit of 10: it fails closed: ingress huge (20 terms) is dropped");
    const deny = cluster("baseline", [{ action: "deny", peers: [{ kind: "any" }], ports: "all" }]);
    assert.equal(verdict([b.policy, deny], 80), true, "the small Accept still accepts");
    assert.equal(verdict([b.policy, deny], 1001), false, "the huge Accept's port goes on to the next tier, which denies");
    assert.equal(verdict([p, deny], 1001), true, "(the full policy would have accepted it)");
  });

  test("an Admin Deny or Pass that does not fit denies everything from there on: it cannot open what it denied nor hand to NetworkPolicy what a later Admin rule decides", () => {
    for (const action of ["deny", "pass"] as const) {
      const p = cluster("admin", [rule("allow", "first", ports(1, 80)), rule(action, "huge", ports(20, 1000)), rule("allow", "later", ports(1, 2000))]);
      const b = boundPolicy(p, LIMIT);
      assert.deepEqual(b.policy.ingress, [rule("allow", "first", ports(1, 80)), DENY_EVERYTHING], action);
      assert.match(b.warning ?? "", /ingress huge \(20 terms\) denies everything instead, and the ingress rules after it are dropped$/);
      assert.equal(verdict([b.policy], 80), true, `${action}: a rule before it still applies`);
      assert.equal(verdict([b.policy], 1001), false, `${action}: what it matched is denied`);
      assert.equal(verdict([b.policy], 3000), false, `${action}: and so is everything else that reaches it`);
    }
  });

  test("a Baseline Pass that does not fit is dropped (a Baseline pass only leads to the default allow); a Baseline Deny denies everything", () => {
    const pass = boundPolicy(cluster("baseline", [rule("pass", "huge", ports(20)), rule("deny", "rest", ports(1, 5000))]), LIMIT);
    assert.deepEqual(pass.policy.ingress?.map((r) => r.label), ["rest"]);
    const deny = boundPolicy(cluster("baseline", [rule("deny", "huge", ports(20)), rule("allow", "rest", ports(1, 5000))]), LIMIT);
    assert.deepEqual(deny.policy.ingress, [DENY_EVERYTHING]);
  });

  test("the budget is shared by both directions, ingress first", () => {
    const p: PolicyIR = { ...cluster("admin", [rule("allow", "in", ports(6))]), egress: [rule("allow", "out-1", ports(4)), rule("allow", "out-2", ports(1))] };
    assert.deepEqual(boundPolicy(p, LIMIT).policy.egress?.map((r) => r.label), ["out-1"], "6 + 4 fit, the 11th term does not");
  });

  test("a real ClusterNetworkPolicy at its schema's limits goes through the model with the warning", () => {
    const networks = Array.from({ length: 25 }, (_, i) => Array.from({ length: 25 }, (_, j) => `198.${18 + (i >> 4)}.${(i & 15) * 16 + (j >> 4)}.${(j & 15) * 16}/28`));
    const protocols = Array.from({ length: 25 }, (_, i) => ({ tcp: { destinationPort: { number: 1000 + i } } }));
    const cnp = clusterNetworkPolicyObject.parse({
      apiVersion: "policy.networking.k8s.io/v1alpha2",
      kind: "ClusterNetworkPolicy",
      metadata: { name: "wide" },
      spec: { tier: "Admin", priority: 3, subject: { namespaces: {} }, egress: [{ name: "block-partners", action: "Deny", to: networks.map((n) => ({ networks: n })), protocols }] },
    }) as KubeObject;
    const model = buildPolicyModel(input([], { ClusterNetworkPolicy: [cnp] }));
    assert.deepEqual(model.policies[0]?.egress, [DENY_EVERYTHING]);
    assert.deepEqual(model.warnings, ["ClusterNetworkPolicy wide expands to 15,625 rule terms after removing duplicates, over the limit of 10,000: it fails closed: egress block-partners (15,625 terms) denies everything instead, and the egress rules after it are dropped"]);
  });
});
