/**
 * The simulated chains (test/helpers/policySim.ts) against the independent reading of the
 * specs that the e2e suites use as a second opinion (test/e2e/policy/oracle.ts, which
 * imports nothing from src/). The cross-checks of policyRender.test.ts and
 * policyTiers.test.ts compare the chains with the reference evaluator, which shares the IR
 * translation, the endpoint index, the cluster addresses, the selectors and the policy
 * order with the renderer: a misreading of a spec in that shared code passes them. Here the
 * objects take the agent's whole path (the store's schema, buildPolicyModel, then
 * renderPolicyModel for every node) and every simulated flow must get the oracle's verdict:
 *
 * 1. the seeded random NetworkPolicies of policyRender.test.ts (the same generator, seed
 *    and rounds);
 * 2. seeded random objects of every kind (ClusterNetworkPolicy Admin and Baseline,
 *    GlobalNetworkPolicy, NetworkPolicy, NetworkSet, GlobalNetworkSet) on the e2e model
 *    (x/y/z × a/b/c on three nodes, two hosts outside), also checked against the evaluator.
 *
 * The oracle reads IPv4 with TCP, UDP and ICMP echo, so the flows are those: pod to pod, a
 * pod to and from every host (its own node included: NetworkPolicy does not judge that, the
 * Admin and Baseline tiers do), and each pod back to itself through a Service (a hairpin:
 * in and out of its own interface). A disagreement is settled by reading the spec, never
 * by copying either side's answer.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { NetworkPolicyObject } from "../../src/config/k8sSchemas.js";
import { KINDS, type KubeObject, apiVersionOf } from "../../src/config/resourceKinds.js";
import { type NamespaceInfo, type PodEndpoint, hostIfaceName } from "../../src/model/endpoint.js";
import type { Family } from "../../src/model/ip.js";
import { type Connection, PolicyEvaluator } from "../../src/policy/evaluate.js";
import { buildPolicyModel } from "../../src/policy/model.js";
import { renderPolicyModel } from "../../src/render/policy.js";
import { mulberry32 } from "../helpers/golden.js";
import type { Protocol } from "../helpers/policyMatrix.js";
import { DEFAULT_SPORT, Node, type SimCluster, simulate } from "../helpers/policySim.js";
import { RANDOM_NP_NODES, RANDOM_NP_ROUNDS, RANDOM_NP_SEED, randomNetworkPolicyScenario } from "../helpers/randomNetworkPolicies.js";
import { CONTAINER_PORTS, NAMESPACE_NAME_LABEL, NODES, nodeLabels } from "../e2e/policy/model.js";
import { Oracle } from "../e2e/policy/oracle.js";
import { ClusterState, type ObjectKind, type PodState, type PolicyDoc, SimulatedCluster, objectKey } from "../e2e/policy/state.js";

/** TCP and UDP on the ports pods serve and on one they do not, and an ICMP echo request. */
const PROBES: ReadonlyArray<{ protocol: Protocol; port: number }> = [
  { protocol: "TCP", port: 80 },
  { protocol: "TCP", port: 81 },
  { protocol: "TCP", port: 8080 },
  { protocol: "UDP", port: 80 },
  { protocol: "UDP", port: 81 },
  { protocol: "ICMP", port: 0 },
];

/** A stored object of a registered kind, validated and defaulted by its schema as the store does (on a copy). */
function stored(kind: string, body: Record<string, unknown>): KubeObject {
  const k = KINDS.find((x) => x.kind === kind);
  if (!k) throw new Error(`no kind ${kind} in the registry`);
  return k.schema.parse({ apiVersion: apiVersionOf(k), kind, ...structuredClone(body) });
}

interface Product {
  cluster: SimCluster;
  evaluator: PolicyEvaluator;
}

/** What the agent of every node programs for these objects, as simulated chains, and the evaluator over the same model. */
function product(endpoints: PodEndpoint[], namespaces: NamespaceInfo[], st: ClusterState, nodes: readonly string[], sctpSupported: boolean): Product {
  const objects: Record<string, KubeObject[]> = {};
  for (const d of st.policies.values()) (objects[d.kind] ??= []).push(stored(d.kind, { metadata: d.metadata, spec: d.spec }));
  const hostOf = (n: string): string => st.addresses.hosts[n] as string;
  objects["Node"] = nodes.map((n) => stored("Node", { metadata: { name: n, labels: nodeLabels(n) }, status: { addresses: [{ type: "InternalIP", address: hostOf(n) }] } }));
  const model = buildPolicyModel({ endpoints, namespaces, networkPolicies: (objects["NetworkPolicy"] ?? []) as NetworkPolicyObject[], objects });
  const hostIp: Record<string, Record<Family, string>> = Object.fromEntries(nodes.map((n, i) => [n, { 4: hostOf(n), 6: `fd99::${i + 1}` }]));
  const sim = new Map(nodes.map((n) => [n, new Node(n, renderPolicyModel({ family: 4, nodeName: n, model, sctpSupported }), 4)]));
  return { cluster: { family: 4, endpoints, nodes: sim, hostIp }, evaluator: PolicyEvaluator.fromModel(model, { sctpSupported }) };
}

interface Flow {
  what: string;
  conn: Connection;
  oracle: boolean;
}

/** Every flow the oracle can judge: pod to pod, each pod to and from every host, each pod to itself through a Service. */
function flows(st: ClusterState, oracle: Oracle): Flow[] {
  const out: Flow[] = [];
  const pods = [...st.pods.values()];
  const conn = (src: string, dst: string, p: (typeof PROBES)[number]): Connection => ({ src, dst, protocol: p.protocol, port: p.port, srcPort: p.protocol === "ICMP" ? undefined : DEFAULT_SPORT });
  for (const p of PROBES) {
    const probe = `${p.protocol}/${p.port}`;
    for (const a of pods) {
      for (const b of pods) if (a !== b) out.push({ what: `${a.key} -> ${b.key} ${probe}`, conn: conn(a.ip, b.ip, p), oracle: oracle.allowed(a.key, b.key, p.port, p.protocol) });
      out.push({ what: `${a.key} -> itself through a Service ${probe}`, conn: { ...conn(a.ip, a.ip, p), hairpin: true }, oracle: oracle.allowedHairpin(a.key, p.port, p.protocol) });
      for (const [host, ip] of Object.entries(st.addresses.hosts)) {
        const own = host === a.node ? " (its own node)" : "";
        out.push({ what: `${a.key} -> ${host}${own} ${probe}`, conn: conn(a.ip, ip, p), oracle: oracle.allowedToHost(a.key, host, p.port, p.protocol) });
        out.push({ what: `${host}${own} -> ${a.key} ${probe}`, conn: conn(ip, a.ip, p), oracle: oracle.allowedFromHost(host, a.key, p.port, p.protocol) });
      }
    }
  }
  return out;
}

const word = (allowed: boolean): string => (allowed ? "allow" : "deny");

/** The flows where the simulated chains (and, when asked, the evaluator) disagree with the oracle, at most `max` of them. */
function disagreements(p: Product, all: readonly Flow[], withEvaluator: boolean, max = 12): string[] {
  const out: string[] = [];
  for (const f of all) {
    const chains = simulate(p.cluster, f.conn).allowed;
    const evaluator = withEvaluator ? p.evaluator.evaluate(f.conn).allowed : f.oracle;
    if (chains === f.oracle && evaluator === f.oracle) continue;
    out.push(`  ${f.what}: oracle ${word(f.oracle)}, chains ${word(chains)}${withEvaluator ? `, evaluator ${word(evaluator)}` : ""}`);
    if (out.length >= max) break;
  }
  return out;
}

const docsText = (st: ClusterState): string => [...st.policies.values()].map((d) => `  ${d.kind} ${d.metadata.namespace ?? ""}/${d.metadata.name} ${JSON.stringify(d.metadata.labels ?? {})}: ${JSON.stringify(d.spec)}`).join("\n");

// ---------------------------------------------------------------- 1. the NetworkPolicies of policyRender.test.ts

/** The oracle's view of a random NetworkPolicy scenario: IPv4 pods, the namespace name label the API server adds. */
function oracleState(sc: ReturnType<typeof randomNetworkPolicyScenario>): ClusterState {
  const [local, remote] = RANDOM_NP_NODES;
  const st = new ClusterState({
    network: "10.244.0.0/16",
    subnets: { [local]: "10.244.1.0/24", [remote]: "10.244.2.0/24" },
    // The nodes' own addresses as policyRender.test.ts has them, and three hosts outside (one inside the pod network, no pod).
    hosts: { [local]: "192.168.0.1", [remote]: "192.168.0.2", "ext-a": "192.0.2.7", "ext-b": "10.9.9.9", "ext-c": "10.244.2.200" },
  });
  for (const n of sc.namespaces) st.namespaces.set(n.name, { name: n.name, labels: { ...n.labels, [NAMESPACE_NAME_LABEL]: n.name } });
  for (const e of sc.endpoints) {
    const ip = e.ips.find((a) => !a.includes(":"));
    if (ip === undefined) continue; // IPv6 only: in no IPv4 flow
    // SCTP container ports are left out: a named port resolves only for its own protocol, and no probe is SCTP.
    const ports = e.ports.filter((p): p is PodState["ports"][number] => p.protocol !== "SCTP" && p.name !== undefined);
    const key = `${e.namespace}/${e.pod}`;
    st.pods.set(key, { key, namespace: e.namespace, name: e.pod, node: e.node, ip, labels: { ...e.labels }, ports });
  }
  for (const p of sc.raw) st.policies.set(objectKey({ kind: "NetworkPolicy", namespace: p.namespace, name: p.name }), { kind: "NetworkPolicy", metadata: { name: p.name, namespace: p.namespace }, spec: p.spec });
  return st;
}

// ---------------------------------------------------------------- 2. random objects of every kind on the e2e model

const RANDOM_CLUSTER_SEED = 1717;
const RANDOM_CLUSTER_ROUNDS = 40;

/** The endpoints the agent would know for the model's pods (interfaces named as sluice-cni names them). */
function endpointsOf(st: ClusterState): PodEndpoint[] {
  return [...st.pods.values()].map((p) => ({ namespace: p.namespace, pod: p.name, node: p.node, hostIface: hostIfaceName(p.namespace, p.name), ips: [p.ip], labels: { ...p.labels }, ports: p.ports.map((x) => ({ ...x })) }));
}

/**
 * The e2e model with random extra labels (tenant and env on namespaces, app on pods), a
 * second external host, and 1-5 random policies plus 0-3 network sets. Every object is one
 * the schemas accept. Left out on purpose: GlobalNetworkPolicy source ports (the oracle does
 * not know a probe's source port) and CNP domainNames (which match nothing).
 */
function randomClusterState(rnd: () => number, round: number): ClusterState {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const maybe = (p = 0.5): boolean => rnd() < p;
  const list = <T>(f: () => T, min: number, max: number): T[] => Array.from({ length: min + Math.floor(rnd() * (max - min + 1)) }, f);
  const st = new SimulatedCluster().state;
  st.addresses.hosts["ext-2"] = "198.51.100.7";
  for (const ns of st.namespaces.values()) {
    if (maybe()) ns.labels["tenant"] = pick(["red", "blue"]);
    if (maybe(0.3)) ns.labels["env"] = pick(["prod", "dev"]);
  }
  for (const p of st.pods.values()) if (maybe(0.6)) p.labels["app"] = pick(["web", "db"]);

  const podSel = (): unknown =>
    pick([{}, { matchLabels: { pod: pick(["a", "b", "c"]) } }, { matchLabels: { app: pick(["web", "db"]) } }, { matchExpressions: [{ key: "app", operator: pick(["In", "NotIn"]), values: [pick(["web", "db"])] }] }, { matchExpressions: [{ key: "app", operator: pick(["Exists", "DoesNotExist"]) }] }]);
  const nsSel = (): unknown =>
    pick([{}, { matchLabels: { ns: pick(["x", "y", "z"]) } }, { matchLabels: { tenant: pick(["red", "blue"]) } }, { matchExpressions: [{ key: "tenant", operator: pick(["Exists", "DoesNotExist"]) }] }, { matchExpressions: [{ key: NAMESPACE_NAME_LABEL, operator: "NotIn", values: [pick(["x", "y"])] }] }]);
  const nodeSel = (): unknown => pick([{}, { matchLabels: { "kubernetes.io/hostname": pick(["node-1", "node-2", "node-3"]) } }, { matchExpressions: [{ key: "kubernetes.io/hostname", operator: "NotIn", values: ["node-1"] }] }]);
  const setSel = (): unknown => pick([{}, { matchLabels: { kind: pick(["partner", "corp"]) } }]);
  // Pod addresses: node-K's pods are 10.244.1K.2 (x), .3 (y), .4 (z); nodes 10.250.1.1K; hosts outside 203.0.113.11, 198.51.100.7.
  const cidr = (): string => pick(["10.244.0.0/16", "10.244.12.0/24", "10.244.11.2/32", "203.0.113.0/24", "198.51.100.0/24", "10.250.1.0/24", "10.250.1.12/32", "0.0.0.0/0", "fd00::/8"]);
  const namedPort = (): string => pick(CONTAINER_PORTS.map((p) => p.name));
  const docs: PolicyDoc[] = [];
  const add = (kind: ObjectKind, name: string, spec: Record<string, unknown>, namespace?: string, labels?: Record<string, string>): void =>
    void docs.push({ kind, metadata: { name, ...(namespace !== undefined ? { namespace } : {}), ...(labels ? { labels } : {}) }, spec });

  // ClusterNetworkPolicy
  const cnpPods = (): unknown => ({ ...(maybe() ? { namespaceSelector: nsSel() } : {}), podSelector: podSel() });
  const cnpProtocol = (named: boolean): unknown =>
    pick([
      { tcp: { destinationPort: { number: pick([80, 81]) } } },
      { udp: { destinationPort: { number: pick([80, 81]) } } },
      { tcp: { destinationPort: { range: { start: 80, end: 81 } } } },
      { udp: { destinationPort: { range: { start: 81, end: 90 } } } },
      { sctp: { destinationPort: { number: 80 } } },
      ...(named ? [{ destinationNamedPort: namedPort() }] : []),
    ]);
  const cnpRule = (dir: "ingress" | "egress"): Record<string, unknown> => {
    const peers = list((): Record<string, unknown> => (dir === "egress" && maybe(0.4) ? (maybe() ? { nodes: nodeSel() } : { networks: [...new Set(list(cidr, 1, 2))] }) : maybe() ? { namespaces: nsSel() } : { pods: cnpPods() }), 1, 2);
    const named = !peers.some((p) => p["nodes"] !== undefined || p["networks"] !== undefined);
    return { action: pick(["Accept", "Deny", "Pass"]), [dir === "ingress" ? "from" : "to"]: peers, ...(maybe(0.5) ? { protocols: list(() => cnpProtocol(named), 1, 2) } : {}) };
  };
  // GlobalNetworkPolicy
  const entity = (ports: boolean): Record<string, unknown> | undefined => {
    const e: Record<string, unknown> = {};
    if (maybe(0.25)) e["nets"] = [cidr()];
    if (maybe(0.2)) e["notNets"] = [cidr()];
    if (maybe(0.4)) e["selector"] = maybe(0.7) ? podSel() : setSel();
    if (maybe(0.3)) e["namespaceSelector"] = nsSel();
    if (ports && maybe(0.4)) e["ports"] = list(() => pick<number | string>([80, 81, "80:81", "81:90", namedPort()]), 1, 2);
    if (ports && maybe(0.2)) e["notPorts"] = [pick<number | string>([80, 81, namedPort()])];
    return Object.keys(e).length > 0 ? e : undefined;
  };
  const gnpRule = (): Record<string, unknown> => {
    const protocol = maybe(0.6) ? pick(["TCP", "UDP", "ICMP", "SCTP"]) : undefined;
    const ports = protocol === "TCP" || protocol === "UDP" || protocol === "SCTP";
    const r: Record<string, unknown> = { action: pick(["Allow", "Deny", "Pass", "Log"]) };
    if (protocol) r["protocol"] = protocol;
    if (protocol === "ICMP" && maybe()) r["icmp"] = pick([{ type: 8 }, { type: 8, code: 0 }, { type: 8, code: 1 }, { type: 3 }]);
    const source = entity(false);
    const destination = entity(ports);
    if (source) r["source"] = source;
    if (destination) r["destination"] = destination;
    return r;
  };
  // NetworkPolicy
  const npPeer = (): unknown => {
    const r = rnd();
    if (r < 0.3) return { podSelector: podSel() };
    if (r < 0.5) return { namespaceSelector: nsSel() };
    if (r < 0.7) return { namespaceSelector: nsSel(), podSelector: podSel() };
    return { ipBlock: pick([{ cidr: "10.244.0.0/16", except: ["10.244.12.0/24"] }, { cidr: "0.0.0.0/0", except: ["10.244.0.0/16"] }, { cidr: "10.250.1.0/24", except: ["10.250.1.12/32"] }, { cidr: "203.0.113.0/24" }, { cidr: "10.244.11.2/32" }, { cidr: "fd00::/8" }]) };
  };
  const npPort = (): unknown => pick([{ port: 80 }, { port: 80, endPort: 81 }, { protocol: "UDP" }, { port: "serve-81-tcp" }, { protocol: "UDP", port: "serve-80-udp" }, { protocol: "UDP", port: 81 }, { protocol: "SCTP", port: 80 }]);
  const npRule = (key: "from" | "to"): unknown => ({ ...(maybe(0.7) ? { [key]: list(npPeer, 0, 2) } : {}), ...(maybe(0.6) ? { ports: list(npPort, 0, 2) } : {}) });

  const count = 1 + Math.floor(rnd() * 5);
  for (let k = 0; k < count; k++) {
    const name = `r${round}-p${k}`;
    const kind = pick(["admin", "admin", "baseline", "gnp", "gnp", "np"] as const);
    if (kind === "admin" || kind === "baseline") {
      const spec: Record<string, unknown> = { tier: kind === "admin" ? "Admin" : "Baseline", priority: Math.floor(rnd() * 4), subject: maybe() ? { namespaces: nsSel() } : { pods: cnpPods() } };
      for (const dir of ["ingress", "egress"] as const) if (maybe(0.7)) spec[dir] = list(() => cnpRule(dir), 1, 3);
      add("ClusterNetworkPolicy", name, spec);
    } else if (kind === "gnp") {
      const spec: Record<string, unknown> = {};
      if (maybe(0.7)) spec["order"] = Math.floor(rnd() * 4);
      if (maybe(0.6)) spec["selector"] = podSel();
      if (maybe(0.5)) spec["namespaceSelector"] = nsSel();
      if (maybe(0.3)) spec["types"] = pick([["Ingress"], ["Egress"], ["Ingress", "Egress"]]);
      for (const dir of ["ingress", "egress"] as const) if (maybe(0.7)) spec[dir] = list(gnpRule, 1, 3);
      add("GlobalNetworkPolicy", name, spec);
    } else {
      const spec: Record<string, unknown> = { podSelector: podSel() };
      if (maybe(0.8)) spec["ingress"] = list(() => npRule("from"), 0, 2);
      if (maybe(0.5)) spec["egress"] = list(() => npRule("to"), 0, 2);
      if (maybe(0.4)) spec["policyTypes"] = pick([["Ingress"], ["Egress"], ["Ingress", "Egress"]]);
      add("NetworkPolicy", name, spec, pick(["x", "y", "z"]));
    }
  }
  const netsOfSet = (): Record<string, unknown> => ({ nets: [...new Set(list(cidr, 1, 2))] });
  for (let k = 0, n = Math.floor(rnd() * 3); k < n; k++) add("NetworkSet", `r${round}-ns${k}`, netsOfSet(), pick(["x", "y", "z"]), { kind: pick(["partner", "corp"]) });
  for (let k = 0, n = Math.floor(rnd() * 2); k < n; k++) add("GlobalNetworkSet", `r${round}-gs${k}`, netsOfSet(), undefined, { kind: pick(["partner", "corp"]) });
  for (const d of docs) st.policies.set(objectKey({ kind: d.kind, namespace: d.metadata.namespace, name: d.metadata.name }), d);
  return st;
}

// ---------------------------------------------------------------- the checks

describe("policy chains against the independent oracle (no shared code)", () => {
  test("the seeded random NetworkPolicies of policyRender.test.ts: every IPv4 flow gets the oracle's verdict", () => {
    const rnd = mulberry32(RANDOM_NP_SEED);
    let checked = 0;
    let denied = 0;
    for (let round = 0; round < RANDOM_NP_ROUNDS; round++) {
      const sc = randomNetworkPolicyScenario(rnd);
      const st = oracleState(sc);
      const all = flows(st, new Oracle(st));
      const wrong = disagreements(product(sc.endpoints, sc.namespaces, st, RANDOM_NP_NODES, sc.sctp), all, false);
      assert.deepEqual(wrong, [], `round ${round} (sctpSupported ${sc.sctp}):\n${wrong.join("\n")}\npolicies:\n${docsText(st)}`);
      checked += all.length;
      denied += all.filter((f) => !f.oracle).length;
    }
    console.log(`# oracle, random NetworkPolicies: ${checked} flows, ${denied} denied`);
    assert.ok(checked > 20_000, `only ${checked} flows checked`);
    assert.ok(denied > checked / 10 && denied < checked - checked / 10, `${denied} of ${checked} denied: the policies must decide both ways`);
  });

  test("seeded random objects of every kind on the e2e model: every flow gets the oracle's verdict, from the chains and from the evaluator", () => {
    const rnd = mulberry32(RANDOM_CLUSTER_SEED);
    let checked = 0;
    let denied = 0;
    const kinds = new Map<string, number>();
    for (let round = 0; round < RANDOM_CLUSTER_ROUNDS; round++) {
      const st = randomClusterState(rnd, round);
      for (const d of st.policies.values()) kinds.set(d.kind, (kinds.get(d.kind) ?? 0) + 1);
      const all = flows(st, new Oracle(st));
      const wrong = disagreements(product(endpointsOf(st), [...st.namespaces.values()], st, NODES, false), all, true);
      const labels = [...st.namespaces.values()].map((n) => `${n.name} ${JSON.stringify(n.labels)}`).concat([...st.pods.values()].map((p) => `${p.key} ${JSON.stringify(p.labels)}`));
      assert.deepEqual(wrong, [], `round ${round}:\n${wrong.join("\n")}\nobjects:\n${docsText(st)}\nlabels: ${labels.join("; ")}`);
      checked += all.length;
      denied += all.filter((f) => !f.oracle).length;
    }
    console.log(`# oracle, random objects of every kind: ${checked} flows, ${denied} denied; objects: ${[...kinds].map(([k, n]) => `${k} x${n}`).join(", ")}`);
    assert.ok(checked > 30_000, `only ${checked} flows checked`);
    assert.ok(denied > checked / 10 && denied < checked - checked / 10, `${denied} of ${checked} denied: the policies must decide both ways`);
    assert.equal(kinds.size, 5, `every kind generated: ${[...kinds.keys()].join(", ")}`);
  });
});

