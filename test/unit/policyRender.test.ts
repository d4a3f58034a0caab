import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { networkPolicyObject, type NetworkPolicyObject } from "../../src/config/k8sSchemas.js";
import { type ContainerPort, type NamespaceInfo, type PodEndpoint, type Protocol, hostIfaceName } from "../../src/model/endpoint.js";
import type { Family } from "../../src/model/ip.js";
import { renderPolicy, policyChainName, endpointChainName } from "../../src/render/policy.js";
import type { PolicyRenderInput } from "../../src/render/policyContract.js";
import { formatFreshRestore, formatIpsets, formatPolicyRender, formatPolicyRenderNft, policyTableSpec } from "../../src/render/policyText.js";
import { renderTable } from "../../src/render/ruleset.js";
import { formatTable } from "../../src/render/iptablesFormat.js";
import { renderText } from "../helpers/ruleText.js";
import { planTable } from "../../src/dataplane/iptablesPlan.js";
import { networkPolicyToIr } from "../../src/policy/networkPolicy.js";
import { EndpointIndex } from "../../src/policy/endpointIndex.js";
import { PolicyEvaluator } from "../../src/policy/evaluate.js";
import type { NodeInfo } from "../../src/policy/model.js";
import { Node, type Packet, type SimCluster, UPLINK, VXLAN, crossCheck as runCrossCheck } from "../helpers/policySim.js";
import { assertPolicyGolden, mulberry32 } from "../helpers/golden.js";
import { RANDOM_NP_ROUNDS, RANDOM_NP_SEED, randomNetworkPolicyScenario } from "../helpers/randomNetworkPolicies.js";

// ---------------------------------------------------------------- fixtures

const NODE = "n1";
const REMOTE = "n2";

function np(namespace: string, name: string, spec: unknown): NetworkPolicyObject {
  return networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec });
}

function pod(namespace: string, name: string, node: string, ips: string, labels: Record<string, string> = {}, ports: ContainerPort[] = []): PodEndpoint {
  return { namespace, pod: name, node, hostIface: hostIfaceName(namespace, name), ips: ips.split(" ").filter(Boolean), labels, ports };
}

const tcp = (name: string, containerPort: number): ContainerPort => ({ name, containerPort, protocol: "TCP" });

const namespaces: NamespaceInfo[] = [
  { name: "prod", labels: { team: "shop", env: "prod" } },
  { name: "dev", labels: { team: "shop", env: "dev" } },
  { name: "ops", labels: { team: "ops" } },
];

// Local pods (n1): prod/web 10.244.1.2, prod/db 10.244.1.3; remote (n2): prod/api, dev/db, ops/monitor.
const web = pod("prod", "web", NODE, "10.244.1.2 fd00:244:1::2", { app: "web" }, [tcp("http", 8080)]);
const db = pod("prod", "db", NODE, "10.244.1.3 fd00:244:1::3", { app: "db" }, [tcp("pg", 5432)]);
const api = pod("prod", "api", REMOTE, "10.244.2.4 fd00:244:2::4", { app: "api" }, [tcp("http", 8000)]);
const devDb = pod("dev", "db", REMOTE, "10.244.2.5 fd00:244:2::5", { app: "db" }, [tcp("pg", 5433)]);
const monitor = pod("ops", "monitor", REMOTE, "10.244.2.6", { app: "monitor" });
const endpoints = [web, db, api, devDb, monitor];

interface Scenario {
  name: string;
  description: string;
  family?: Family;
  sctpSupported?: boolean;
  endpoints?: PodEndpoint[];
  policies: NetworkPolicyObject[];
}

const webSel = { matchLabels: { app: "web" } };
const dbSel = { matchLabels: { app: "db" } };

const scenarios: Scenario[] = [
  {
    name: "no-policy",
    description: "No policy: both local pods default-allow; remote pods get no chains; no ipsets.",
    policies: [],
  },
  {
    name: "deny-all-ingress",
    description: "podSelector {} with no ingress rules: every pod of prod isolated for ingress, nothing allowed; egress untouched.",
    policies: [np("prod", "deny-all", { podSelector: {} })],
  },
  {
    name: "allow-from-podselector",
    description: "web accepts anything from app=db pods of its own namespace (prod: db, not dev/db), and nothing else; db stays open.",
    policies: [np("prod", "web-from-db", { podSelector: webSel, ingress: [{ from: [{ podSelector: dbSel }] }] })],
  },
  {
    name: "namespace-and-pod-selector",
    description: "db accepts TCP 5432 from app=db pods in namespaces with env=dev (AND in one peer), OR from any pod of namespaces with team=ops (second peer).",
    policies: [np("prod", "db-ingress", { podSelector: dbSel, ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "dev" } }, podSelector: dbSel }, { namespaceSelector: { matchLabels: { team: "ops" } } }], ports: [{ port: 5432 }] }] })],
  },
  {
    name: "ipblock-except",
    description: "web accepts from 10.0.0.0/8 except 10.244.2.0/24 (ingress); db may send only to 0.0.0.0/0 except 10.0.0.0/8 (egress, /0 split into two /1 halves).",
    policies: [
      np("prod", "web-from-block", { podSelector: webSel, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.244.2.0/24"] } }] }] }),
      np("prod", "db-to-world", { podSelector: dbSel, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.0/8"] } }] }] }),
    ],
  },
  {
    name: "named-port",
    description: "Ingress: web accepts its own port named http (8080/TCP) from anyone. Egress: db may reach port 'http' of prod pods (api 8000) and port 'http' of any pod inside 10.244.0.0/16 (never a non-pod), and 'pg' of any pod.",
    policies: [
      np("prod", "web-http", { podSelector: webSel, ingress: [{ ports: [{ port: "http" }] }] }),
      np("prod", "db-egress", { podSelector: dbSel, policyTypes: ["Egress"], egress: [{ to: [{ podSelector: {} }, { ipBlock: { cidr: "10.244.0.0/16" } }], ports: [{ port: "http" }] }, { ports: [{ port: "pg" }] }] }),
    ],
  },
  {
    name: "endport",
    description: "web accepts TCP 8000-8080 and UDP 53 from anyone, and all UDP from ops namespaces; a UDP entry opens no TCP.",
    policies: [np("prod", "web-range", { podSelector: webSel, ingress: [{ ports: [{ port: 8000, endPort: 8080 }, { protocol: "UDP", port: 53 }] }, { from: [{ namespaceSelector: { matchLabels: { team: "ops" } } }], ports: [{ protocol: "UDP" }] }] })],
  },
  {
    name: "sctp-unsupported",
    description: "Kernel without SCTP: the SCTP-only rule renders nothing, the mixed rule keeps only TCP 80; web stays isolated (final DROP).",
    sctpSupported: false,
    policies: [np("prod", "web-sctp", { podSelector: webSel, ingress: [{ ports: [{ protocol: "SCTP", port: 3868 }] }, { ports: [{ protocol: "SCTP", port: 9 }, { port: 80 }] }] })],
  },
  {
    name: "egress-deny-all",
    description: "policyTypes [Egress] without rules: every prod pod may send nothing, but to its own node (NetworkPolicy does not judge that) and to itself; ingress untouched.",
    policies: [np("prod", "no-egress", { podSelector: {}, policyTypes: ["Egress"] })],
  },
  {
    name: "two-policies-union",
    description: "web is selected by two policies (from ops namespaces; from prod app=api): it accepts the union; db is selected only by prod/all-from-api.",
    policies: [
      np("prod", "web-from-ops", { podSelector: webSel, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "ops" } } }] }] }),
      np("prod", "all-from-api", { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { app: "api" } } }] }] }),
    ],
  },
  {
    name: "dual-stack-v6",
    description: "Family 6: web accepts from fd00:244::/32 except fd00:244:2::/64 and from 10.0.0.0/8 (skipped: IPv4), and from app=db pods; a v4-only local pod (ops/v4only) drops all IPv6; ICMPv6 ND to the host accepted.",
    family: 6,
    endpoints: [...endpoints, pod("ops", "v4only", NODE, "10.244.1.9", { app: "v4" })],
    policies: [np("prod", "web-v6", { podSelector: webSel, ingress: [{ from: [{ ipBlock: { cidr: "fd00:244::/32", except: ["fd00:244:2::/64"] } }, { ipBlock: { cidr: "10.0.0.0/8" } }, { podSelector: dbSel }], ports: [{ port: 8080 }] }] })],
  },
];

function inputOf(s: Scenario, nodeName = NODE): PolicyRenderInput {
  return { family: s.family ?? 4, nodeName, endpoints: s.endpoints ?? endpoints, namespaces, networkPolicies: s.policies, sctpSupported: s.sctpSupported ?? false };
}

function header(s: Scenario, input: PolicyRenderInput): string {
  const lines = [`# scenario ${s.name}: ${s.description}`, `# family ${input.family}, node ${input.nodeName}, sctpSupported ${input.sctpSupported}`];
  for (const n of input.namespaces) lines.push(`# namespace ${n.name} ${JSON.stringify(n.labels)}`);
  for (const e of input.endpoints) {
    const ports = e.ports.map((p) => `${p.name ?? ""}=${p.containerPort}/${p.protocol}`).join(" ");
    lines.push(`# pod ${e.namespace}/${e.pod} node=${e.node} iface=${e.hostIface} ips=${e.ips.join(",")} labels=${JSON.stringify(e.labels)}${ports ? ` ports=${ports}` : ""}`);
  }
  for (const p of input.networkPolicies) {
    const id = `${p.metadata.namespace}/${p.metadata.name}`;
    lines.push(`# policy ${id} (chains ${policyChainName("ingress", id)} / ${policyChainName("egress", id)}): ${JSON.stringify(p.spec)}`);
  }
  return `${lines.join("\n")}\n`;
}

// ---------------------------------------------------------------- simulated nodes (test/helpers/policySim.ts)

const HOST_IP: Record<string, Record<Family, string>> = { n1: { 4: "192.168.0.1", 6: "fd99::1" }, n2: { 4: "192.168.0.2", 6: "fd99::2" } };
const NODE_INFO: NodeInfo[] = Object.entries(HOST_IP).map(([name, a]) => ({ name, labels: {}, addresses: [a[4], a[6]] }));

function nodesFor(input: Omit<PolicyRenderInput, "nodeName">): Map<string, Node> {
  const m = new Map<string, Node>();
  for (const n of [NODE, REMOTE]) m.set(n, new Node(n, renderPolicy({ ...input, nodeName: n }), input.family));
  return m;
}

/** Every flow between the addresses, every probe port: simulated chains == the IR's reference meaning. */
function crossCheck(input: Omit<PolicyRenderInput, "nodeName">, extra: string[], probes: [Protocol, number][]): number {
  const cl: SimCluster = { family: input.family, endpoints: input.endpoints, nodes: nodesFor(input), hostIp: HOST_IP };
  const ev = new PolicyEvaluator(input.networkPolicies.map(networkPolicyToIr), new EndpointIndex(input.endpoints, input.namespaces), { sctpSupported: input.sctpSupported }, { nodes: NODE_INFO });
  return runCrossCheck(cl, ev, extra, probes.map(([protocol, port]) => ({ protocol, port })));
}

const PROBES: [Protocol, number][] = [
  ["TCP", 80],
  ["TCP", 5432],
  ["TCP", 5433],
  ["TCP", 8000],
  ["TCP", 8080],
  ["TCP", 8081],
  ["UDP", 53],
  ["UDP", 8080],
  ["SCTP", 3868],
  ["SCTP", 9],
];
const EXTERNALS = ["192.0.2.7", "10.9.9.9", "10.244.2.77", "fd00:244:2::77", "fd00:244:9::1", "2001:db8::1"];

// ---------------------------------------------------------------- tests


describe("policy render: golden files", () => {
  for (const s of scenarios) {
    test(`${s.name}: ${s.description}`, () => {
      const input = inputOf(s);
      assertPolicyGolden(s.name, header(s, input) + formatPolicyRender(renderPolicy(input)));
    });
    test(`${s.name} (nftables): the same render as one nft transaction`, () => {
      const input = inputOf(s);
      assertPolicyGolden(s.name, header(s, input) + formatPolicyRenderNft(renderPolicy(input), input.family), "nft");
    });
  }
});

// Renderer and evaluator share the IR translation, the endpoint index and the selectors, so
// these checks catch renderer bugs, not a misreading of the spec in the shared code: that is
// what test/unit/policyOracle.test.ts checks, over the same seeded random policies.
describe("policy render: the simulated chains agree with the reference evaluator (renderer against evaluator)", () => {
  for (const s of scenarios) {
    test(`${s.name}: every flow through the simulated chains agrees with the reference evaluator`, () => {
      assert.ok(crossCheck(inputOf(s), EXTERNALS, PROBES) > 0);
    });
  }

  test("randomized clusters and policies (seeded): chains agree with the reference evaluator", () => {
    const rnd = mulberry32(RANDOM_NP_SEED);
    let flows = 0;
    for (let round = 0; round < RANDOM_NP_ROUNDS; round++) {
      const sc = randomNetworkPolicyScenario(rnd);
      for (const family of [4, 6] as const) flows += crossCheck({ family, endpoints: sc.endpoints, namespaces: sc.namespaces, networkPolicies: sc.policies, sctpSupported: sc.sctp }, RANDOM_EXTERNALS, RANDOM_PROBES);
    }
    assert.ok(flows > 10000, `only ${flows} flows checked`);
  });
});

describe("policy render: structure", () => {
  test("fresh restore text equals the planner's output for an empty kernel", () => {
    for (const s of scenarios) {
      const t = renderTable(formatTable(policyTableSpec(renderPolicy(inputOf(s)))));
      assert.equal(formatFreshRestore(t), planTable(t, undefined).restore);
    }
  });

  test("dispatch, conntrack, anti-spoofing and fail-closed defaults", () => {
    const r = renderText(renderPolicy(inputOf(scenarios[1] as Scenario)));
    assert.deepEqual(r.forwardRules, ["-i slc+ -j MARK --set-xmark 0x0/0x40000", "-i slc+ -j slc-from-wl", "-o slc+ -j slc-to-wl"]);
    assert.deepEqual(r.inputRules, ["-i slc+ -j MARK --set-xmark 0x40000/0x40000", "-i slc+ -j slc-from-wl"]);
    assert.deepEqual(r.outputRules, ["-o slc+ -j ACCEPT"]);
    const chain = (n: string): string[] => r.chains.find((c) => c.name === n)?.rules ?? [];
    const locals = [web, db].sort((a, b) => (a.hostIface < b.hostIface ? -1 : 1));
    assert.deepEqual(chain("slc-from-wl"), [...locals.map((e) => `-i ${e.hostIface} -g slc-fw-${e.hostIface}`), "-j DROP"]);
    assert.deepEqual(chain("slc-to-wl"), [...locals.map((e) => `-o ${e.hostIface} -g slc-tw-${e.hostIface}`), "-j DROP"]);
    const pi = policyChainName("ingress", "prod/deny-all");
    assert.deepEqual(chain(`slc-tw-${web.hostIface}`), [
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-m conntrack --ctstate INVALID -j DROP",
      "-j MARK --set-xmark 0x0/0x70000",
      "-s 10.244.1.2/32 -j MARK --set-xmark 0x40000/0x40000", // from itself (a Service hairpin): NetworkPolicy cannot block it
      `-m mark --mark 0x0/0x40000 -j ${pi}`,
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      "-m mark --mark 0x0/0x40000 -j DROP",
      "-j RETURN",
    ]);
    assert.deepEqual(chain(`slc-fw-${web.hostIface}`), [
      "! -s 10.244.1.2/32 -j DROP", // before the conntrack accept: no forged packet rides a flow
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-m conntrack --ctstate INVALID -j DROP",
      "-j MARK --set-xmark 0x0/0x30000",
      "-j RETURN",
    ]);
    assert.deepEqual(chain(pi), []);
    assert.equal(r.chains.some((c) => c.name.includes(api.hostIface)), false, "remote pods get no chains");
    for (const c of r.chains) assert.ok(c.name.length <= 28 && c.name.startsWith("slc-"), c.name);
  });

  test("simulator: spoofed sources, unknown interfaces and established traffic", () => {
    const nodes = nodesFor({ family: 4, endpoints, namespaces, networkPolicies: scenarios[1]?.policies ?? [], sctpSupported: false });
    const n1 = nodes.get(NODE) as Node;
    const base = { proto: "tcp" as const, dport: 80, mark: 0 };
    assert.equal(n1.forward({ ...base, inIface: web.hostIface, outIface: UPLINK, src: "10.244.1.3", dst: "192.0.2.1", ctstate: "NEW" }), false, "db's address from web's interface");
    assert.equal(n1.forward({ ...base, inIface: web.hostIface, outIface: UPLINK, src: "10.244.1.2", dst: "192.0.2.1", ctstate: "NEW" }), true);
    assert.equal(n1.forward({ ...base, inIface: "slc000000000000", outIface: UPLINK, src: "10.244.1.99", dst: "192.0.2.1", ctstate: "NEW" }), false, "unknown pod interface");
    assert.equal(n1.forward({ ...base, inIface: UPLINK, outIface: "slc000000000000", src: "192.0.2.1", dst: "10.244.1.99", ctstate: "NEW" }), false);
    assert.equal(n1.forward({ ...base, inIface: UPLINK, outIface: web.hostIface, src: "192.0.2.1", dst: "10.244.1.2", ctstate: "NEW" }), false, "isolated");
    assert.equal(n1.forward({ ...base, inIface: UPLINK, outIface: web.hostIface, src: "192.0.2.1", dst: "10.244.1.2", ctstate: "ESTABLISHED" }), true);
    assert.equal(n1.forward({ ...base, inIface: web.hostIface, outIface: UPLINK, src: "10.244.1.2", dst: "192.0.2.1", ctstate: "INVALID" }), false);
    assert.equal(n1.forward({ ...base, inIface: UPLINK, outIface: VXLAN, src: "192.0.2.1", dst: "10.244.2.4", ctstate: "NEW" }), true, "not ours to judge");
    // mark bits of others survive
    const p = { ...base, inIface: web.hostIface, outIface: UPLINK, src: "10.244.1.2", dst: "192.0.2.1", ctstate: "NEW" as const, mark: 0x4000 };
    assert.equal(n1.forward(p), true);
    assert.equal(p.mark & 0x4000, 0x4000);
  });

  test("raw table: every local pod's packets are checked for its own source before conntrack (IPv4)", () => {
    const r = renderText(renderPolicy(inputOf(scenarios[0] as Scenario)));
    assert.deepEqual(r.rawPreroutingRules, ["-i slc+ -j slc-antispoof"]);
    const locals = [web, db].sort((a, b) => (a.hostIface < b.hostIface ? -1 : 1));
    assert.deepEqual(r.rawChains, [{ name: "slc-antispoof", rules: locals.map((e) => `! -s ${e.ips[0] as string}/32 -i ${e.hostIface} -j DROP`) }]);
    const none = renderPolicy({ ...inputOf(scenarios[0] as Scenario), nodeName: "n3" });
    assert.deepEqual(none.rawChains, [{ name: "slc-antispoof", rules: [] }], "no local pod: an empty check, still hooked");
  });

  test("raw table, IPv6: link-local and unspecified sources only for neighbour discovery and MLD; a pod without an IPv6 address sends none", () => {
    const v4only = pod("ops", "v4only", NODE, "10.244.1.9");
    const two = pod("prod", "two", NODE, "fd00:244:1::60 fd00:244:1::61");
    const rendered = renderPolicy({ ...inputOf(scenarios[0] as Scenario), family: 6, endpoints: [...endpoints, v4only, two] });
    const r = renderText(rendered);
    const chain = (n: string): string[] => r.rawChains.find((c) => c.name === n)?.rules ?? [];
    const rules = chain("slc-antispoof");
    assert.deepEqual(rules.slice(0, 2), ["-s fe80::/10 -p ipv6-icmp -g slc-antispoof-nd", "-s ::/128 -p ipv6-icmp -g slc-antispoof-nd"]);
    assert.ok(rules.includes(`-i ${v4only.hostIface} -j DROP`));
    assert.ok(rules.includes(`! -s fd00:244:1::2/128 -i ${web.hostIface} -j DROP`));
    const i = rules.indexOf(`-s fd00:244:1::60/128 -i ${two.hostIface} -j RETURN`);
    assert.deepEqual(rules.slice(i, i + 3), [`-s fd00:244:1::60/128 -i ${two.hostIface} -j RETURN`, `-s fd00:244:1::61/128 -i ${two.hostIface} -j RETURN`, `-i ${two.hostIface} -j DROP`]);
    assert.deepEqual(chain("slc-antispoof-nd"), [...[130, 131, 132, 133, 135, 136].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`), "-j DROP"]);

    const n1 = new Node(NODE, rendered, 6);
    const from = (iface: string, src: string, extra: Partial<Packet> = {}): Packet => ({ inIface: iface, src, dst: "ff02::1:ff00:1", proto: "ipv6-icmp", dport: 0, icmpType: 135, ctstate: "NEW", mark: 0, ...extra });
    assert.equal(n1.prerouting(from(web.hostIface, "fe80::1")), true, "NS from the pod's link-local address");
    assert.equal(n1.prerouting(from(web.hostIface, "::")), true, "DAD NS from the unspecified address");
    assert.equal(n1.prerouting(from(v4only.hostIface, "fe80::1", { icmpType: 131 })), true, "MLD report, even from a pod without an IPv6 address");
    assert.equal(n1.prerouting(from(web.hostIface, "fe80::1", { icmpType: 128, dst: "fe80::ecee:eeff:feee:eeee" })), false, "echo from a link-local source");
    assert.equal(n1.prerouting(from(web.hostIface, "fe80::1", { proto: "udp", dport: 53, icmpType: undefined })), false, "UDP from a link-local source");
    assert.equal(n1.prerouting(from(web.hostIface, "fd00:244:1::3", { icmpType: 136 })), false, "NA carrying db's address from web's interface");
    assert.equal(n1.prerouting(from(web.hostIface, "fd00:244:1::2", { icmpType: 136 })), true);
    assert.equal(n1.prerouting(from(two.hostIface, "fd00:244:1::61", { proto: "udp", dport: 53 })), true);
    assert.equal(n1.prerouting(from(two.hostIface, "fd00:244:1::62", { proto: "udp", dport: 53 })), false);
    assert.equal(n1.prerouting(from(v4only.hostIface, "fd00:244:1::9", { proto: "udp", dport: 53 })), false);
    assert.equal(n1.prerouting(from(UPLINK, "fd00:244:1::3", { proto: "udp", dport: 53 })), true, "not from a pod: not ours to judge here");
  });

  test("a forged source rides no flow: ESTABLISHED and RELATED packets with a neighbour's or a peer's address are dropped in raw, and again in filter", () => {
    for (const family of [4, 6] as const) {
      const nodes = nodesFor({ family, endpoints, namespaces, networkPolicies: [], sctpSupported: false });
      const n1 = nodes.get(NODE) as Node;
      const addr = (e: PodEndpoint): string => e.ips.find((a) => a.includes(":") === (family === 6)) as string;
      const udp = { proto: "udp" as const, sport: 40000, dport: 80, mark: 0 };
      const forged: [string, Packet][] = [
        ["db -> api, original direction of db's flow", { ...udp, inIface: web.hostIface, outIface: VXLAN, src: addr(db), dst: addr(api), ctstate: "ESTABLISHED" }],
        ["api -> db, reply direction of db's flow (db's ingress chain is never reached)", { ...udp, inIface: web.hostIface, outIface: db.hostIface, src: addr(api), dst: addr(db), ctstate: "ESTABLISHED" }],
        ["an ICMP error as api's, RELATED to db's flow", { proto: family === 4 ? "icmp" : "ipv6-icmp", dport: 0, icmpType: family === 4 ? 3 : 1, icmpCode: family === 4 ? 3 : 4, mark: 0, inIface: web.hostIface, outIface: db.hostIface, src: addr(api), dst: addr(db), ctstate: "RELATED" }],
        ["db -> api, no conntrack entry", { ...udp, inIface: web.hostIface, outIface: VXLAN, src: addr(db), dst: addr(api), ctstate: "NEW" }],
      ];
      for (const [what, p] of forged) {
        assert.equal(n1.prerouting({ ...p }), false, `IPv${family} ${what}: raw`);
        assert.equal(n1.nf.run("SLUICE-FORWARD", { ...p }), "DROP", `IPv${family} ${what}: filter on its own`);
        assert.equal(n1.input({ ...p, outIface: undefined, dst: HOST_IP[NODE]?.[family] as string }), false, `IPv${family} ${what}, to the node`);
      }
      // The genuine packets of the same flows still pass.
      assert.equal(n1.forward({ ...udp, inIface: db.hostIface, outIface: VXLAN, src: addr(db), dst: addr(api), ctstate: "ESTABLISHED" }), true);
      assert.equal(n1.forward({ ...udp, inIface: VXLAN, outIface: db.hostIface, src: addr(api), dst: addr(db), ctstate: "ESTABLISHED" }), true);
    }
  });

  test("a pod with two addresses of a family may send from either, from nothing else, and its policy still applies", () => {
    const two = pod("prod", "two", NODE, "10.244.1.60 10.244.1.61", { app: "web" });
    const nodes = nodesFor({ family: 4, endpoints: [...endpoints, two], namespaces, networkPolicies: [np("prod", "web-egress", { podSelector: webSel, policyTypes: ["Egress"], egress: [{ ports: [{ port: 443 }] }] })], sctpSupported: false });
    const n1 = nodes.get(NODE) as Node;
    const p = (src: string, dport: number): Packet => ({ inIface: two.hostIface, outIface: UPLINK, src, dst: "192.0.2.1", proto: "tcp", dport, ctstate: "NEW", mark: 0 });
    assert.equal(n1.forward(p("10.244.1.60", 443)), true);
    assert.equal(n1.forward(p("10.244.1.61", 443)), true);
    assert.equal(n1.forward(p("10.244.1.61", 80)), false, "isolated: only 443 allowed");
    assert.equal(n1.forward(p("10.244.1.62", 443)), false, "spoofed");
  });

  test("IPv6: a pod egress-isolated by a NetworkPolicy still reaches its own node (ND, echo, TCP); a spoofed source does not", () => {
    const nodes = nodesFor({ family: 6, endpoints, namespaces, networkPolicies: [np("prod", "no-egress", { podSelector: {}, policyTypes: ["Egress"] })], sctpSupported: false });
    const n1 = nodes.get(NODE) as Node;
    const ns = { inIface: web.hostIface, src: "fe80::1", dst: "ff02::1:ff00:1", proto: "ipv6-icmp" as const, dport: 0, ctstate: "NEW" as const, mark: 0 };
    assert.equal(n1.input({ ...ns, icmpType: 135 }), true);
    const own = web.ips.find((a) => a.includes(":")) as string;
    assert.equal(n1.input({ ...ns, icmpType: 128, src: own, dst: "fd99::1" }), true, "NetworkPolicy does not judge traffic to the pod's own node");
    assert.equal(n1.input({ ...ns, proto: "tcp", dport: 22, src: own, dst: "fd99::1" }), true);
    assert.equal(n1.input({ ...ns, proto: "tcp", dport: 22, src: "fd00:244:1::99", dst: "fd99::1" }), false, "anti-spoofing still applies");
  });

  test("policy chains are shared: one per policy and direction, jumped to from every selected local pod", () => {
    const many = Array.from({ length: 20 }, (_, k) => pod("prod", `w${k}`, NODE, `10.244.1.${100 + k}`, { app: "web" }));
    const r = renderText(renderPolicy({ ...inputOf(scenarios[2] as Scenario), endpoints: [...endpoints, ...many] }));
    const pi = policyChainName("ingress", "prod/web-from-db");
    assert.equal(r.chains.filter((c) => c.name.startsWith("slc-pi-")).length, 1);
    const jumps = r.chains.flatMap((c) => c.rules).filter((x) => x.endsWith(` -j ${pi}`)).length;
    assert.equal(jumps, 21);
    assert.equal(r.ipsets.length, 1);
  });

  test("membership changes touch only ipsets; set names are stable and depend on the definition only", () => {
    const s = scenarios[3] as Scenario;
    const a = renderPolicy(inputOf(s));
    const moved = renderPolicy({ ...inputOf(s), endpoints: [...endpoints, pod("dev", "db2", REMOTE, "10.244.2.50", { app: "db" })] });
    assert.deepEqual(moved.chains, a.chains);
    assert.notDeepEqual(moved.ipsets, a.ipsets);
    assert.deepEqual(moved.ipsets.map((x) => x.name), a.ipsets.map((x) => x.name));
    // a peer set with no members is still rendered (and matches nothing)
    const empty = renderPolicy({ ...inputOf(s), endpoints: [web, db] });
    assert.deepEqual(empty.chains, a.chains);
    assert.ok(empty.ipsets.every((x) => x.members.length === 0));
    for (const x of a.ipsets) assert.match(x.name, /^slc4-(ip|net|port)-[0-9a-f]{16}$/);
  });

  test("chains only for local pods and for policies that select one; sets only when referenced", () => {
    const r = renderText(renderPolicy({ ...inputOf(scenarios[3] as Scenario), nodeName: "n3" }));
    assert.deepEqual(r.chains.map((c) => c.name), ["slc-from-wl", "slc-to-wl"]);
    assert.deepEqual(r.chains.map((c) => c.rules), [["-j DROP"], ["-j DROP"]]);
    assert.deepEqual(r.ipsets, []);
  });

  test("a local endpoint with a malformed interface name gets no chain (its traffic is dropped by dispatch)", () => {
    const bad = [{ ...pod("prod", "bad1", NODE, "10.244.1.50"), hostIface: "slc bad" }, { ...pod("prod", "bad2", NODE, "10.244.1.51"), hostIface: "slc+" }, { ...pod("prod", "bad3", NODE, "10.244.1.52"), hostIface: "slc0123456789abcdef" }, { ...pod("prod", "bad4", NODE, "10.244.1.53"), hostIface: "" }];
    const r = renderPolicy({ ...inputOf(scenarios[0] as Scenario), endpoints: [...endpoints, ...bad] });
    assert.deepEqual(r, renderPolicy(inputOf(scenarios[0] as Scenario)));
  });

  test("an endpoint whose Pod or Namespace object is missing matches no selector and, when local, is isolated both ways", () => {
    const orphan = { ...pod("prod", "orphan", NODE, "10.244.1.60"), metadataKnown: false };
    const remoteOrphan = { ...pod("prod", "orphan2", REMOTE, "10.244.2.60"), metadataKnown: false };
    const policies = [np("prod", "from-not-db", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: "app", operator: "NotIn", values: ["db"] }] } }] }] })];
    const rendered = renderPolicy({ family: 4, nodeName: NODE, endpoints: [...endpoints, orphan, remoteOrphan], namespaces, networkPolicies: policies, sctpSupported: false });
    const r = renderText(rendered);
    const chain = (n: string): string[] => r.chains.find((c) => c.name === n)?.rules ?? [];
    for (const d of ["egress", "ingress"] as const) {
      const rules = chain(endpointChainName(d, orphan.hostIface));
      assert.equal(rules.at(-1), "-j DROP", `${d}: isolated although no policy selects it`);
      assert.ok(!rules.some((x) => x.includes("slc-p")), `${d}: no policy chain`);
    }
    // NotIn matches pods without the label; an orphan's labels are unknown, so it is never a peer.
    const members = r.ipsets.flatMap((s) => s.members);
    assert.ok(!members.includes("10.244.1.60") && !members.includes("10.244.2.60"), members.join(" "));
    const n1 = new Node(NODE, rendered, 4);
    const base = { proto: "tcp" as const, dport: 80, ctstate: "NEW" as const, mark: 0 };
    assert.equal(n1.forward({ ...base, inIface: UPLINK, outIface: orphan.hostIface, src: "192.0.2.1", dst: "10.244.1.60" }), false);
    assert.equal(n1.input({ ...base, inIface: orphan.hostIface, src: "10.244.1.60", dst: "10.250.1.11" }), false, "not even to its own node (an Admin rule might deny that)");
    assert.equal(n1.output({ ...base, outIface: orphan.hostIface, src: "10.250.1.11", dst: "10.244.1.60" }), "ACCEPT", "its own node still reaches it");
  });

  test("deterministic: input order does not matter", () => {
    for (const s of scenarios) {
      const i = inputOf(s);
      const a = renderPolicy(i);
      const b = renderPolicy({ ...i, endpoints: [...i.endpoints].reverse(), namespaces: [...i.namespaces].reverse(), networkPolicies: [...i.networkPolicies].reverse() });
      assert.deepEqual(b, a, s.name);
    }
  });

  test("ipset text: create lines with the family, then members", () => {
    assert.equal(formatIpsets([{ name: "slc6-net-x", type: "hash:net", family: 6, members: ["fd00::/64", "fd00::/80 nomatch"] }]), "create slc6-net-x hash:net family inet6\nadd slc6-net-x fd00::/64\nadd slc6-net-x fd00::/80 nomatch\n");
  });

  test("scale: 5,000 endpoints, 500 local, 1,000 policies renders, rules linear in policies + local pods", () => {
    const rnd = mulberry32(7);
    const nss: NamespaceInfo[] = Array.from({ length: 50 }, (_, k) => ({ name: `ns${k}`, labels: { team: `t${k % 7}`, env: k % 2 ? "prod" : "dev" } }));
    const eps: PodEndpoint[] = Array.from({ length: 5000 }, (_, k) => {
      const ns = `ns${k % 50}`;
      return pod(ns, `p${k}`, k < 500 ? NODE : `n${2 + (k % 9)}`, `10.${(k >> 8) & 255}.${k & 255}.1`, { app: `a${k % 40}`, tier: `t${k % 3}` }, [tcp("http", 8000 + (k % 5))]);
    });
    const pols = Array.from({ length: 1000 }, (_, k) =>
      np(`ns${k % 50}`, `p${k}`, {
        podSelector: { matchLabels: { app: `a${k % 40}` } },
        policyTypes: ["Ingress", "Egress"],
        ingress: [{ from: [{ podSelector: { matchLabels: { tier: `t${k % 3}` } } }, { namespaceSelector: { matchLabels: { team: `t${k % 7}` } }, podSelector: { matchLabels: { app: `a${Math.floor(rnd() * 40)}` } } }], ports: [{ port: "http" }, { port: 443 }] }],
        egress: [{ to: [{ namespaceSelector: {} }, { ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }], ports: [{ port: 53, protocol: "UDP" }, { port: "http" }] }],
      }),
    );
    const started = process.hrtime.bigint();
    const r = renderPolicy({ family: 4, nodeName: NODE, endpoints: eps, namespaces: nss, networkPolicies: pols, sctpSupported: false });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const rules = r.chains.reduce((n, c) => n + c.rules.length, 0);
    console.log(`# scale: ${ms.toFixed(0)} ms, ${r.chains.length} chains, ${rules} rules, ${r.ipsets.length} ipsets, ${r.ipsets.reduce((n, s) => n + s.members.length, 0)} members`);
    assert.ok(rules < 20 * (1000 + 500) + 2000, `${rules} rules`);
    assert.ok(r.chains.length <= 2 + 2 * 500 + 2 * 1000);
  });
});

// ---------------------------------------------------------------- random scenarios

const RANDOM_EXTERNALS = ["192.0.2.7", "10.9.9.9", "10.244.2.200", "fd00:244:2::200", "2001:db8::1"];
const RANDOM_PROBES: [Protocol, number][] = [
  ["TCP", 80],
  ["TCP", 8080],
  ["TCP", 9090],
  ["UDP", 53],
  ["UDP", 80],
  ["SCTP", 80],
];
