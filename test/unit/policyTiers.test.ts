/**
 * The tiers (Admin, NetworkPolicy, Baseline, default) and every IR construct, in the
 * renderer and in the evaluator, kept in agreement: hand-built IR (the YAML translators are
 * tested elsewhere), golden files for each tier interaction, the simulated chains checked
 * against the evaluator over many connections (verdicts and LOG lines), explain texts. The
 * evaluator shares the IR and its helpers with the renderer; the check against an
 * independent reading of the specs is test/unit/policyOracle.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { networkPolicyObject } from "../../src/config/k8sSchemas.js";
import type { LabelSelector } from "../../src/config/k8sSchemas.js";
import { type ContainerPort, type NamespaceInfo, type PodEndpoint, hostIfaceName } from "../../src/model/endpoint.js";
import type { Family } from "../../src/model/ip.js";
import { type Connection, PolicyEvaluator, type Verdict } from "../../src/policy/evaluate.js";
import { EndpointIndex } from "../../src/policy/endpointIndex.js";
import type { Direction, Peer, PodSet, PolicyIR, PortSpec, RuleAction, RuleIR } from "../../src/policy/ir.js";
import type { NetworkSetInfo, NodeInfo, PolicyModel } from "../../src/policy/model.js";
import { networkPolicyToIr } from "../../src/policy/networkPolicy.js";
import { normalizeSelector } from "../../src/policy/selectors.js";
import { LOG_PREFIX_MAX, endpointChainName, logPrefix, policyChainName, renderPolicyIr, renderPolicyModel } from "../../src/render/policy.js";
import { formatPolicyRender, formatPolicyRenderNft } from "../../src/render/policyText.js";
import { renderText, texts as ruleTexts } from "../helpers/ruleText.js";
import type { PolicyRender } from "../../src/render/policyContract.js";
import { assertPolicyGolden, mulberry32 } from "../helpers/golden.js";
import { planPrepare } from "../../src/dataplane/ipsetPlan.js";
import { DEFAULT_SPORT, Node, type SimCluster, crossCheck, simulate } from "../helpers/policySim.js";

// ---------------------------------------------------------------- fixtures

const NODE = "n1";
const REMOTE = "n2";

const namespaces: NamespaceInfo[] = [
  { name: "prod", labels: { team: "shop", env: "prod" } },
  { name: "dev", labels: { team: "shop", env: "dev" } },
  { name: "ops", labels: { team: "ops" } },
];

function pod(namespace: string, name: string, node: string, ips: string, labels: Record<string, string> = {}, ports: ContainerPort[] = []): PodEndpoint {
  return { namespace, pod: name, node, hostIface: hostIfaceName(namespace, name), ips: ips.split(" ").filter(Boolean), labels, ports };
}

const web = pod("prod", "web", NODE, "10.244.1.2 fd00:244:1::2", { app: "web" }, [{ name: "http", containerPort: 8080, protocol: "TCP" }]);
const db = pod("prod", "db", NODE, "10.244.1.3 fd00:244:1::3", { app: "db" }, [{ name: "pg", containerPort: 5432, protocol: "TCP" }]);
const tool = pod("dev", "tool", NODE, "10.244.1.4 fd00:244:1::4", { app: "tool" }, [{ name: "dns", containerPort: 53, protocol: "UDP" }]);
const api = pod("prod", "api", REMOTE, "10.244.2.4 fd00:244:2::4", { app: "api" }, [{ name: "http", containerPort: 8000, protocol: "TCP" }]);
const devDb = pod("dev", "db", REMOTE, "10.244.2.5 fd00:244:2::5", { app: "db" });
const monitor = pod("ops", "monitor", REMOTE, "10.244.2.6", { app: "monitor" }, [{ name: "dns", containerPort: 53, protocol: "UDP" }]);
const endpoints = [web, db, tool, api, devDb, monitor];

const HOST_IP: Record<string, Record<Family, string>> = { n1: { 4: "192.168.0.1", 6: "fd99::1" }, n2: { 4: "192.168.0.2", 6: "fd99::2" }, n3: { 4: "192.168.0.3", 6: "fd99::3" } };
const nodes: NodeInfo[] = [
  { name: "n1", labels: { zone: "a", role: "worker" }, addresses: ["192.168.0.1", "fd99::1"] },
  { name: "n2", labels: { zone: "b", role: "worker" }, addresses: ["192.168.0.2", "fd99:0::2"] },
  { name: "n3", labels: { role: "infra" }, addresses: ["192.168.0.3", "fd99::3"] },
];
const networkSets: NetworkSetInfo[] = [
  { namespace: undefined, name: "corp", labels: { kind: "corp" }, nets: ["192.0.2.0/24", "2001:db8::/32"] },
  { namespace: "dev", name: "partners", labels: { kind: "partner" }, nets: ["198.51.100.0/24", "10.244.2.6/32"] },
  { namespace: "prod", name: "partners", labels: { kind: "partner" }, nets: ["203.0.113.0/24", "fd00:244:2::/64"] },
];
const EXTERNALS = ["192.0.2.7", "192.0.2.200", "198.51.100.9", "203.0.113.1", "10.9.9.9", "2001:db8::1", "fd00:244:9::1", "2001:db9::1"];

const sel = (labels: Record<string, string> = {}): LabelSelector => normalizeSelector({ matchLabels: labels });
const inNs = (ns: string, labels: Record<string, string> = {}): PodSet => ({ namespaces: { kind: "name", name: ns }, pods: sel(labels) });
const inNsSel = (nsLabels: Record<string, string>, labels: Record<string, string> = {}): PodSet => ({ namespaces: { kind: "selector", selector: sel(nsLabels) }, pods: sel(labels) });
const everyPod = inNsSel({});

const pods = (s: PodSet): Peer => ({ kind: "pods", pods: s });
const block = (cidr: string, ...except: string[]): Peer => ({ kind: "ipBlock", cidr, except });
const any: Peer = { kind: "any" };
const tcp = (from: number, to = from): PortSpec => ({ kind: "range", protocol: "TCP", from, to });
const udp = (from: number, to = from): PortSpec => ({ kind: "range", protocol: "UDP", from, to });
const sctp = (from: number, to = from): PortSpec => ({ kind: "range", protocol: "SCTP", from, to });
const icmp4 = (type?: number, code?: number): PortSpec => ({ kind: "icmp", family: 4, type, code });
const icmp6 = (type?: number, code?: number): PortSpec => ({ kind: "icmp", family: 6, type, code });

function rule(action: RuleAction, peers: Peer[], ports: PortSpec[] | "all" = "all", extra: Partial<RuleIR> = {}): RuleIR {
  return { action, peers, ports, ...extra };
}

interface Rules {
  ingress?: RuleIR[];
  egress?: RuleIR[];
}

function cnp(name: string, tier: "admin" | "baseline", priority: number, subject: PodSet, r: Rules): PolicyIR {
  return { id: `cnp:${name}`, tier, priority, subject, ingress: r.ingress, egress: r.egress, origin: { kind: "ClusterNetworkPolicy", name } };
}

function gnp(name: string, order: number, subject: PodSet, r: Rules): PolicyIR {
  return { id: `gnp:${name}`, tier: "admin", priority: 1_000_000 + order, subject, ingress: r.ingress, egress: r.egress, origin: { kind: "GlobalNetworkPolicy", name } };
}

function knp(namespace: string, name: string, spec: unknown): PolicyIR {
  const ir = networkPolicyToIr(networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec }));
  return { ...ir, origin: { kind: "NetworkPolicy", namespace, name } };
}

interface Scenario {
  name: string;
  description: string;
  policies: PolicyIR[];
  endpoints?: PodEndpoint[];
  sctp?: boolean;
}

/**
 * SCTP port numbers in every tier and position, for a node whose iptables cannot test them
 * (and for one that can): web's ingress denies SCTP 9 from ops, passes SCTP 80 from dev,
 * allows SCTP 80 from anyone, and a NetworkPolicy allows everything; web's egress denies
 * all SCTP (protocol only: no sctp match needed); db allows everything but SCTP 80.
 */
const SCTP_POLICIES: PolicyIR[] = [
  cnp("sctp-ports", "admin", 7, inNs("prod", { app: "web" }), {
    ingress: [rule("deny", [pods(inNsSel({ team: "ops" }))], [sctp(9)]), rule("pass", [pods(inNs("dev"))], [sctp(80)]), rule("allow", [any], [sctp(80)])],
    egress: [rule("deny", [any], [{ kind: "protocol", protocol: "SCTP" }])],
  }),
  knp("prod", "web-open", { podSelector: { matchLabels: { app: "web" } }, ingress: [{}] }),
  gnp("db-but-sctp-80", 1, inNs("prod", { app: "db" }), { ingress: [rule("allow", [any], "all", { notPorts: [sctp(80)] }), rule("deny", [any])] }),
];

const scenarios: Scenario[] = [
  {
    name: "tier-sctp-without-match",
    description: "No sctp match: the Deny of SCTP 9 covers all SCTP from ops, the Pass of SCTP 80 from dev drops dev's SCTP, the Allow of SCTP 80 renders nothing, the protocol-only Deny stays, db's exclusion of SCTP 80 excludes all SCTP.",
    policies: SCTP_POLICIES,
    sctp: false,
  },
  {
    name: "tier-sctp-with-match",
    description: "The same policies where iptables can test SCTP ports: every rule exact.",
    policies: SCTP_POLICIES,
    sctp: true,
  },
  {
    name: "tier-admin-deny-beats-np",
    description: "Admin: prod denies ingress from dev (rule 2) after logging it (rule 1); a NetworkPolicy allowing everything into prod does not help dev.",
    policies: [
      cnp("tenant-isolation", "admin", 10, inNsSel({ env: "prod" }), { ingress: [rule("log", [pods(inNsSel({ env: "dev" }))], [tcp(80)]), rule("deny", [pods(inNsSel({ env: "dev" }))])] }),
      knp("prod", "allow-all", { podSelector: {}, ingress: [{}] }),
    ],
  },
  {
    name: "tier-admin-pass",
    description: "Admin pass: db passes ops to the NetworkPolicy tier (which allows TCP 5432 only), allows api on 5432, denies the rest; a later admin deny of ops is skipped for db (pass) but applies to web.",
    policies: [
      cnp("shared-services", "admin", 5, inNs("prod", { app: "db" }), { ingress: [rule("pass", [pods(inNsSel({ team: "ops" }))]), rule("allow", [pods(inNs("prod", { app: "api" }))], [tcp(5432)]), rule("deny", [any])] }),
      cnp("later-deny", "admin", 20, inNs("prod"), { ingress: [rule("deny", [pods(inNsSel({ team: "ops" }))])] }),
      knp("prod", "db-from-ops", { podSelector: { matchLabels: { app: "db" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "ops" } } }], ports: [{ port: 5432 }] }] }),
    ],
  },
  {
    name: "tier-baseline-after-np",
    description: "Baseline applies only where no NetworkPolicy isolates: web (isolated: dev may reach it) ignores the baseline; db and tool get the baseline (prod pods allowed, the rest denied).",
    policies: [
      cnp("default-deny", "baseline", 0, everyPod, { ingress: [rule("allow", [pods(inNsSel({ env: "prod" }))]), rule("deny", [any])] }),
      knp("prod", "web-from-dev", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "dev" } } }] }] }),
    ],
  },
  {
    name: "tier-baseline-pass",
    description: "Baseline pass: prod egress to the corp network passes to the default (allow) past a lower baseline deny-all; an admin pass on web's TCP 443 is cleared before the baseline, so the baseline still denies it.",
    policies: [
      cnp("corp-pass", "baseline", 1, inNs("prod"), { egress: [rule("pass", [block("192.0.2.0/24"), block("2001:db8::/32")])] }),
      cnp("egress-deny", "baseline", 2, inNs("prod"), { egress: [rule("deny", [any])] }),
      cnp("web-443", "admin", 1, inNs("prod", { app: "web" }), { egress: [rule("pass", [any], [tcp(443)])] }),
    ],
  },
  {
    name: "tier-log-continue",
    description: "Log then continue: admin logs TCP 80 and everything (rules 1 and 3) around a dev deny; the NetworkPolicy allows web; db falls to the baseline, which logs and allows TCP 80; an egress log over several lines logs once (its own chain, goto).",
    policies: [
      cnp("audit", "admin", 1, everyPod, {
        ingress: [rule("log", [any], [tcp(80)]), rule("deny", [pods(inNs("dev"))], [tcp(80)]), rule("log", [any])],
        egress: [rule("log", [pods(inNs("dev")), block("198.51.100.0/24")], [tcp(80), udp(53)])],
      }),
      knp("prod", "web-http", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ ports: [{ port: 80 }] }] }),
      cnp("audit-base", "baseline", 1, everyPod, { ingress: [rule("log", [any]), rule("allow", [any], [tcp(80)]), rule("deny", [any])] }),
    ],
  },
  {
    name: "tier-gnp-nets-icmp",
    description: "GNPs after CNPs in the admin tier: a CNP lets 192.0.2.5 in on TCP 443 although the GNP excludes 192.0.2.0/28 (notNets); the GNP denies egress to 10.0.0.0/8 except the pod network, and allows ICMP echo (both families) but no other ICMP; GNP order 10 before 100.",
    policies: [
      cnp("cnp-first", "admin", 1000, inNs("prod"), { ingress: [rule("allow", [block("192.0.2.5/32")], [tcp(443)])] }),
      gnp("gnp-nets", 100, inNs("prod"), {
        ingress: [rule("allow", [block("192.0.2.0/24")], [tcp(443)], { notPeers: [block("192.0.2.0/28")] }), rule("allow", [any], [icmp4(8), icmp6(128)]), rule("deny", [any], [icmp4(), icmp6()])],
        egress: [rule("deny", [block("10.0.0.0/8")], "all", { notPeers: [block("10.244.0.0/16")] }), rule("allow", [any], [icmp4(8, 0), icmp6(128, 0)]), rule("deny", [any], [icmp4(), icmp6()])],
      }),
      gnp("gnp-early", 10, inNs("prod", { app: "web" }), { ingress: [rule("deny", [any], [icmp4(8), icmp6(128)])] }),
    ],
  },
  {
    name: "tier-nodes-sets-allof",
    description: "Peers: nodes by label (infra may reach every pod on TCP 22; no egress to zone b nodes on TCP 10250); network sets (dev may reach the corp set, not dev's partner set); allOf (web accepts 8080 only from pods that are both prod api and inside 10.244.2.0/24).",
    policies: [
      cnp("infra", "admin", 1, everyPod, { ingress: [rule("allow", [{ kind: "nodes", nodes: sel({ role: "infra" }) }], [tcp(22)])], egress: [rule("deny", [{ kind: "nodes", nodes: sel({ zone: "b" }) }], [tcp(10250)])] }),
      gnp("sets", 1, inNs("dev"), {
        egress: [rule("allow", [{ kind: "networkSets", sets: { namespaces: "global", selector: sel({ kind: "corp" }) } }]), rule("deny", [{ kind: "networkSets", sets: { namespaces: { kind: "name", name: "dev" }, selector: sel({ kind: "partner" }) } }])],
      }),
      gnp("allof", 2, inNs("prod", { app: "web" }), {
        ingress: [rule("allow", [{ kind: "allOf", peers: [pods(inNs("prod", { app: "api" })), block("10.244.2.0/24"), block("fd00:244:2::/64")] }], [tcp(8080)]), rule("deny", [any], [tcp(8080)])],
      }),
    ],
  },
  {
    name: "tier-exclusions",
    description: "Exclusions: prod accepts TCP 80-90 but not 85, from source ports 1024-65535 but not 40001, not from dev, only on its own 10.244.1.0/24 address but not db's; egress: non-TCP denied (an exclusion of a protocol: own chain), 5432 denied except to prod pods in 10.244.1.0/24 (allOf exclusion: own chain), DNS from a named source port.",
    policies: [
      gnp("fine", 1, inNs("prod"), {
        ingress: [
          rule("allow", [any], [tcp(80, 90)], {
            notPeers: [pods(inNs("dev"))],
            notPorts: [tcp(85)],
            srcPorts: [tcp(1024, 65535)],
            notSrcPorts: [tcp(40001)],
            self: { peers: [block("10.244.1.0/24"), block("fd00:244:1::/64")], notPeers: [block("10.244.1.3/32"), block("fd00:244:1::3/128")] },
          }),
          rule("deny", [any], [tcp(80, 90)]),
        ],
        egress: [
          rule("allow", [any], [udp(53)], { srcPorts: [{ kind: "named", protocol: "UDP", name: "dns" }] }),
          rule("deny", [any], "all", { notPorts: [{ kind: "protocol", protocol: "TCP" }] }),
          rule("deny", [any], [tcp(5432)], { notPeers: [{ kind: "allOf", peers: [pods(inNs("prod")), block("10.244.1.0/24")] }, { kind: "allOf", peers: [pods(inNs("prod")), block("fd00:244:1::/64")] }] }),
        ],
      }),
      gnp("dev-dns", 2, inNs("dev"), { egress: [rule("deny", [any], [udp(53)], { srcPorts: [{ kind: "named", protocol: "UDP", name: "dns" }], label: "no-dns-server-replies" })] }),
    ],
  },
  {
    name: "tier-own-node-and-self",
    description:
      "A pod's own node and the pod itself (a Service hairpin) skip the NetworkPolicy tier, not the others: the admin tier denies dev's egress to every node (its own too) and passes prod's to worker nodes; NetworkPolicies isolate prod (no egress; ingress from dev only); the baseline denies prod's egress to 192.168.0.0/24 on TCP 22 and prod's ingress from prod pods on TCP 8080.",
    policies: [
      cnp("no-nodes-for-dev", "admin", 1, inNs("dev"), { egress: [rule("deny", [{ kind: "nodes", nodes: sel() }])] }),
      cnp("prod-nodes-pass", "admin", 2, inNs("prod"), { egress: [rule("pass", [{ kind: "nodes", nodes: sel({ role: "worker" }) }])] }),
      knp("prod", "no-egress", { podSelector: {}, policyTypes: ["Egress"] }),
      knp("prod", "from-dev", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "dev" } } }] }] }),
      cnp("base", "baseline", 1, inNs("prod"), { egress: [rule("deny", [block("192.168.0.0/24"), block("fd99::/64")], [tcp(22)])], ingress: [rule("deny", [pods(inNs("prod"))], [tcp(8080)])] }),
    ],
  },
  {
    name: "tier-unknown-metadata",
    description: "A local pod whose Pod object is unknown stays isolated both ways whatever the tiers say (admin allow-all, baseline allow-all), towards its own node and itself too; it is never a peer; its own node still reaches it.",
    endpoints: [...endpoints, { ...pod("prod", "orphan", NODE, "10.244.1.60 fd00:244:1::60", { app: "web" }), metadataKnown: false }],
    policies: [cnp("allow-all", "admin", 1, everyPod, { ingress: [rule("allow", [any])], egress: [rule("allow", [pods(inNs("prod", { app: "web" }))], [tcp(8080)])] }), cnp("base", "baseline", 1, everyPod, { ingress: [rule("allow", [any])] })],
  },
];

const modelOf = (s: Scenario): PolicyModel => ({ endpoints: s.endpoints ?? endpoints, namespaces, nodes, networkSets, policies: s.policies, warnings: [] });

function render(s: Scenario, family: Family, nodeName = NODE): PolicyRender {
  return renderPolicyModel({ family, nodeName, model: modelOf(s), sctpSupported: s.sctp ?? false });
}
const renderT = (s: Scenario, family: Family): ReturnType<typeof renderText> => renderText(render(s, family));

function clusterOf(s: Scenario, family: Family): SimCluster {
  const m = new Map<string, Node>();
  for (const n of [NODE, REMOTE]) m.set(n, new Node(n, render(s, family, n), family));
  return { family, endpoints: s.endpoints ?? endpoints, nodes: m, hostIp: HOST_IP };
}

const evaluatorOf = (s: Scenario): PolicyEvaluator => PolicyEvaluator.fromModel(modelOf(s), { sctpSupported: s.sctp ?? false });

function prefixOf(policies: readonly PolicyIR[]): (step: { policyId?: string | undefined; ruleIndex?: number | undefined }, d: Direction) => string {
  return (step, d) => {
    const p = policies.find((x) => x.id === step.policyId);
    assert.ok(p && step.ruleIndex !== undefined, `log step without policy/rule: ${JSON.stringify(step)}`);
    return logPrefix(p, d, step.ruleIndex);
  };
}

type Probe = Omit<Connection, "src" | "dst">;
const PROBES: Probe[] = [
  { protocol: "TCP", port: 80 },
  { protocol: "TCP", port: 85 },
  { protocol: "TCP", port: 80, srcPort: 40001 },
  { protocol: "TCP", port: 80, srcPort: 53 },
  { protocol: "TCP", port: 22 },
  { protocol: "TCP", port: 443 },
  { protocol: "TCP", port: 5432 },
  { protocol: "TCP", port: 8080 },
  { protocol: "TCP", port: 10250 },
  { protocol: "UDP", port: 53 },
  { protocol: "UDP", port: 53, srcPort: 53 },
  { protocol: "SCTP", port: 80 },
  { protocol: "SCTP", port: 9 },
  { protocol: "ICMP", port: 0 },
  { protocol: "ICMP", port: 0, icmpType: 8, icmpCode: 1 },
  { protocol: "ICMP", port: 0, icmpType: 3, icmpCode: 1 },
  { protocol: "ICMP", port: 0, icmpType: 129, icmpCode: 0 },
];

function header(s: Scenario, family: Family): string {
  const lines = [`# scenario ${s.name}: ${s.description}`, `# family ${family}, node ${NODE}, sctpSupported ${s.sctp ?? false}`];
  for (const n of namespaces) lines.push(`# namespace ${n.name} ${JSON.stringify(n.labels)}`);
  for (const n of nodes) lines.push(`# node ${n.name} ${JSON.stringify(n.labels)} ${n.addresses.join(",")}`);
  for (const n of networkSets) lines.push(`# networkset ${n.namespace ?? "(global)"}/${n.name} ${JSON.stringify(n.labels)} ${n.nets.join(",")}`);
  for (const e of s.endpoints ?? endpoints) lines.push(`# pod ${e.namespace}/${e.pod} node=${e.node} iface=${e.hostIface} ips=${e.ips.join(",")} labels=${JSON.stringify(e.labels)}${e.metadataKnown === false ? " metadataKnown=false" : ""}`);
  for (const p of s.policies) lines.push(`# policy ${p.id} (chains ${policyChainName("ingress", p.id)} / ${policyChainName("egress", p.id)}): ${JSON.stringify({ tier: p.tier, priority: p.priority, subject: p.subject, ingress: p.ingress, egress: p.egress })}`);
  return `${lines.join("\n")}\n`;
}


// ---------------------------------------------------------------- tests

describe("policy tiers: golden files", () => {
  for (const s of scenarios) {
    for (const family of [4, 6] as const) {
      if (family === 6 && !["tier-gnp-nets-icmp", "tier-exclusions", "tier-own-node-and-self"].includes(s.name)) continue;
      const name = family === 4 ? s.name : `${s.name}-v6`;
      test(`${name}: ${s.description}`, () => {
        assertPolicyGolden(name, header(s, family) + formatPolicyRender(render(s, family)));
      });
      test(`${name} (nftables): the same render as one nft transaction`, () => {
        assertPolicyGolden(name, header(s, family) + formatPolicyRenderNft(render(s, family), family), "nft");
      });
    }
  }
});

// Renderer and evaluator share the IR, the endpoint index, the cluster addresses and the
// policy order, so these checks catch renderer bugs, not a misreading of the spec in the
// shared code: test/unit/policyOracle.test.ts checks the chains against an independent oracle.
describe("policy tiers: the chains agree with the evaluator, verdicts and LOG lines (renderer against evaluator)", () => {
  for (const s of scenarios) {
    test(`${s.name}: every flow, both families`, () => {
      let n = 0;
      for (const family of [4, 6] as const) n += crossCheck(clusterOf(s, family), evaluatorOf(s), EXTERNALS, PROBES, { prefixOf: prefixOf(s.policies) });
      assert.ok(n > 1000, `${n} flows`);
    });
  }
});

/** Verdict of one connection by the evaluator, with the simulated chains checked to agree. */
function check(s: Scenario, c: Connection): Verdict {
  const family = c.src.includes(":") ? 6 : 4;
  const v = evaluatorOf(s).evaluate({ srcPort: c.protocol === "ICMP" ? undefined : DEFAULT_SPORT, ...c });
  assert.equal(simulate(clusterOf(s, family), c).allowed, v.allowed, `${c.src} -> ${c.dst}`);
  return v;
}
const texts = (v: Verdict, d: Direction): string[] => v[d].path.map((x) => x.text);
const ip = (p: PodEndpoint, family: Family = 4): string => p.ips.find((a) => a.includes(":") === (family === 6)) as string;
const byName = (n: string): Scenario => scenarios.find((s) => s.name === n) as Scenario;

describe("policy tiers: SCTP port numbers without the sctp match fail closed", () => {
  const [without, withMatch] = [byName("tier-sctp-without-match"), byName("tier-sctp-with-match")];
  const conn = (from: PodEndpoint, to: PodEndpoint, port: number, protocol: Connection["protocol"] = "SCTP"): Connection => ({ src: ip(from), dst: ip(to), protocol, port });
  const verdicts = (c: Connection): [boolean, boolean] => [check(without, c).allowed, check(withMatch, c).allowed];

  test("a Deny of one SCTP port covers every SCTP packet of its peers; other protocols are untouched", () => {
    assert.deepEqual(verdicts(conn(monitor, web, 80)), [false, true]);
    assert.deepEqual(verdicts(conn(monitor, web, 9)), [false, false]);
    assert.deepEqual(verdicts(conn(monitor, web, 80, "TCP")), [true, true]);
  });

  test("a Pass of an SCTP port drops the SCTP packets it might pass, not other protocols", () => {
    assert.deepEqual(verdicts(conn(tool, web, 80)), [false, true]);
    assert.match(texts(check(without, conn(tool, web, 80)), "ingress").join(" | "), /Pass of SCTP ports without the sctp match: Deny/);
    assert.deepEqual(verdicts(conn(tool, web, 80, "TCP")), [true, true]);
  });

  test("an Allow of an SCTP port allows nothing; the next tier decides (here the NetworkPolicy allows)", () => {
    assert.deepEqual(verdicts(conn(api, web, 80)), [true, true]);
    assert.deepEqual(texts(check(without, conn(api, web, 80)), "ingress").some((t) => t.startsWith("[Admin]")), false);
  });

  test("a protocol-only SCTP Deny needs no sctp match and stays (it was dropped: fail open)", () => {
    assert.deepEqual(verdicts(conn(web, api, 80)), [false, false]);
    assert.ok(renderT(without, 4).chains.some((c) => c.rules.some((r) => /^-p sctp -j DROP$/.test(r))), "a -p sctp -j DROP rule");
  });

  test("an exclusion of an SCTP port in an Allow excludes all SCTP (a narrower Allow)", () => {
    assert.deepEqual(verdicts(conn(api, db, 9)), [false, true]);
    assert.deepEqual(verdicts(conn(api, db, 80)), [false, false]);
    assert.deepEqual(verdicts(conn(api, db, 9, "TCP")), [true, true]);
  });

  test("no rendered line tests an SCTP port without the match", () => {
    for (const family of [4, 6] as const) for (const c of renderT(without, family).chains) for (const r of c.rules) assert.doesNotMatch(r, /-m sctp/, `${c.name}: ${r}`);
    assert.ok(renderT(withMatch, 4).chains.some((c) => c.rules.some((r) => r.includes("-m sctp --dport 9"))));
  });
});

describe("policy tiers: what each interaction means (explain paths)", () => {
  test("Admin deny ends evaluation before a NetworkPolicy that allows; log continues", () => {
    const s = byName("tier-admin-deny-beats-np");
    const v = check(s, { src: ip(devDb), dst: ip(web), protocol: "TCP", port: 80 });
    assert.equal(v.allowed, false);
    assert.deepEqual(texts(v, "ingress"), ["[Admin] tenant-isolation rule 1: Log", "[Admin] tenant-isolation rule 2: Deny"]);
    assert.deepEqual(v.ingress.isolatedBy, ["prod/allow-all"]);
    const ok = check(s, { src: ip(monitor), dst: ip(web), protocol: "TCP", port: 80 });
    assert.deepEqual(texts(ok, "ingress"), ["[NetworkPolicy] prod/allow-all rule 1: Allow"]);
    assert.equal(ok.ingress.allowedBy, "prod/allow-all");
  });

  test("Pass hands to the NetworkPolicy tier and skips the rest of the admin tier", () => {
    const s = byName("tier-admin-pass");
    const pg = check(s, { src: ip(monitor), dst: ip(db), protocol: "TCP", port: 5432 });
    assert.deepEqual(texts(pg, "ingress"), ["[Admin] shared-services rule 1: Pass", "[NetworkPolicy] prod/db-from-ops rule 1: Allow"]);
    assert.equal(pg.allowed, true, "the later admin deny of ops was skipped");
    const http = check(s, { src: ip(monitor), dst: ip(db), protocol: "TCP", port: 80 });
    assert.deepEqual(texts(http, "ingress"), ["[Admin] shared-services rule 1: Pass", "[NetworkPolicy] isolated by prod/db-from-ops; no rule allows: Deny"]);
    assert.deepEqual(texts(check(s, { src: ip(monitor), dst: ip(web), protocol: "TCP", port: 80 }), "ingress"), ["[Admin] later-deny rule 1: Deny"]);
    assert.deepEqual(texts(check(s, { src: ip(api), dst: ip(db), protocol: "TCP", port: 5432 }), "ingress"), ["[Admin] shared-services rule 2: Allow"]);
    assert.deepEqual(texts(check(s, { src: "10.9.9.9", dst: ip(db), protocol: "TCP", port: 5432 }), "ingress"), ["[Admin] shared-services rule 3: Deny"]);
  });

  test("Baseline only for pods no NetworkPolicy isolates", () => {
    const s = byName("tier-baseline-after-np");
    assert.deepEqual(texts(check(s, { src: ip(api), dst: ip(web), protocol: "TCP", port: 80 }), "ingress"), ["[NetworkPolicy] isolated by prod/web-from-dev; no rule allows: Deny"]);
    assert.deepEqual(texts(check(s, { src: ip(devDb), dst: ip(web), protocol: "TCP", port: 80 }), "ingress"), ["[NetworkPolicy] prod/web-from-dev rule 1: Allow"]);
    assert.deepEqual(texts(check(s, { src: ip(api), dst: ip(db), protocol: "TCP", port: 80 }), "ingress"), ["[Baseline] default-deny rule 1: Allow"]);
    const denied = check(s, { src: ip(devDb), dst: ip(db), protocol: "TCP", port: 80 });
    assert.deepEqual(texts(denied, "ingress"), ["[Baseline] default-deny rule 2: Deny"]);
    assert.deepEqual(denied.ingress.isolatedBy, []);
    assert.deepEqual(texts(check(s, { src: ip(devDb), dst: ip(db), protocol: "TCP", port: 80 }), "egress"), ["[Default] not isolated: Allow"]);
  });

  test("Pass in the baseline tier hands to the default; an admin pass does not skip the baseline", () => {
    const s = byName("tier-baseline-pass");
    assert.deepEqual(texts(check(s, { src: ip(db), dst: "192.0.2.7", protocol: "UDP", port: 53 }), "egress"), ["[Baseline] corp-pass rule 1: Pass", "[Default] not isolated: Allow"]);
    assert.deepEqual(texts(check(s, { src: ip(db), dst: "10.9.9.9", protocol: "UDP", port: 53 }), "egress"), ["[Baseline] egress-deny rule 1: Deny"]);
    assert.deepEqual(texts(check(s, { src: ip(web), dst: "10.9.9.9", protocol: "TCP", port: 443 }), "egress"), ["[Admin] web-443 rule 1: Pass", "[Baseline] egress-deny rule 1: Deny"]);
    assert.deepEqual(texts(check(s, { src: ip(web, 6), dst: "2001:db8::1", protocol: "TCP", port: 443 }), "egress"), ["[Admin] web-443 rule 1: Pass", "[Baseline] corp-pass rule 1: Pass", "[Default] not isolated: Allow"]);
  });

  test("GNPs come after CNPs; by order among themselves; ICMP by family, type and code", () => {
    const s = byName("tier-gnp-nets-icmp");
    assert.deepEqual(texts(check(s, { src: "192.0.2.5", dst: ip(db), protocol: "TCP", port: 443 }), "ingress"), ["[Admin] cnp-first rule 1: Allow"]);
    assert.equal(check(s, { src: "192.0.2.6", dst: ip(db), protocol: "TCP", port: 443 }).allowed, true, "no admin decision: not isolated, default allow");
    assert.deepEqual(texts(check(s, { src: "192.0.2.200", dst: ip(db), protocol: "TCP", port: 443 }), "ingress"), ["[Admin] gnp-nets rule 1: Allow"]);
    assert.deepEqual(texts(check(s, { src: ip(api), dst: ip(db), protocol: "ICMP", port: 0 }), "ingress"), ["[Admin] gnp-nets rule 2: Allow"]);
    assert.deepEqual(texts(check(s, { src: ip(api, 6), dst: ip(db, 6), protocol: "ICMP", port: 0 }), "ingress"), ["[Admin] gnp-nets rule 2: Allow"]);
    assert.deepEqual(texts(check(s, { src: ip(api), dst: ip(db), protocol: "ICMP", port: 0, icmpType: 3, icmpCode: 1 }), "ingress"), ["[Admin] gnp-nets rule 3: Deny"]);
    assert.deepEqual(texts(check(s, { src: ip(api), dst: ip(web), protocol: "ICMP", port: 0 }), "ingress"), ["[Admin] gnp-early rule 1: Deny"]);
    assert.deepEqual(texts(check(s, { src: ip(db), dst: "10.9.9.9", protocol: "TCP", port: 80 }), "egress"), ["[Admin] gnp-nets rule 1: Deny"]);
    assert.equal(check(s, { src: ip(db), dst: ip(api), protocol: "TCP", port: 80 }).allowed, true, "the pod network is excluded from the deny");
    assert.equal(check(s, { src: ip(db), dst: "192.0.2.7", protocol: "ICMP", port: 0, icmpType: 8, icmpCode: 1 }).allowed, false, "echo with code 1 is not 8/0");
  });

  test("a pod's own node and the pod itself: the admin tier, no NetworkPolicy, the baseline tier", () => {
    const s = byName("tier-own-node-and-self");
    const to = (src: string, dst: string, port: number, extra: Partial<Connection> = {}): Verdict => check(s, { src, dst, protocol: "TCP", port, ...extra });
    // web (prod, on n1): egress-isolated by prod/no-egress, which allows nothing.
    for (const f of [4, 6] as const) {
      const own = HOST_IP["n1"]?.[f] as string;
      assert.deepEqual(texts(to(ip(web, f), own, 22), "egress"), ["[Admin] prod-nodes-pass rule 1: Pass", "[Baseline] base rule 1: Deny"], `IPv${f}: its own node is judged by the baseline, NetworkPolicy left out`);
      const open = to(ip(web, f), own, 80);
      assert.deepEqual(texts(open, "egress"), ["[Admin] prod-nodes-pass rule 1: Pass", "[Node] own node, not subject to NetworkPolicy: Allow"]);
      assert.deepEqual(open.egress.isolatedBy, [], "no NetworkPolicy isolates the pod for this traffic");
      assert.deepEqual(texts(to(ip(web, f), HOST_IP["n2"]?.[f] as string, 80), "egress"), ["[Admin] prod-nodes-pass rule 1: Pass", "[NetworkPolicy] isolated by prod/no-egress; no rule allows: Deny"], "another node is not exempt");
      assert.deepEqual(texts(to(ip(web, f), HOST_IP["n3"]?.[f] as string, 80), "egress"), ["[NetworkPolicy] isolated by prod/no-egress; no rule allows: Deny"]);
      // tool (dev, on n1): the admin deny covers its own node too.
      assert.deepEqual(texts(to(ip(tool, f), own, 80), "egress"), ["[Admin] no-nodes-for-dev rule 1: Deny"]);
      assert.deepEqual(texts(to(ip(tool, f), HOST_IP["n2"]?.[f] as string, 80), "egress"), ["[Admin] no-nodes-for-dev rule 1: Deny"]);
      // Its own node always reaches the pod (the admin tier has no ingress rule for nodes; SLUICE-OUTPUT accepts).
      assert.deepEqual(texts(to(own, ip(web, f), 8080), "ingress"), ["[Node] own node: Allow"]);
    }
    // web through a Service back to itself: both its directions, without the NetworkPolicy tier.
    const hairpin = to(ip(web), ip(web), 8080, { hairpin: true });
    assert.equal(hairpin.allowed, false);
    assert.deepEqual([texts(hairpin, "egress"), texts(hairpin, "ingress")], [["[Self] to itself through a Service, not subject to NetworkPolicy: Allow"], ["[Baseline] base rule 1: Deny"]]);
    assert.deepEqual(texts(to(ip(web, 6), ip(web, 6), 80, { hairpin: true }), "ingress"), ["[Self] to itself through a Service, not subject to NetworkPolicy: Allow"]);
    // By its own address a pod reaches itself without leaving its network namespace: no policy sees it.
    const direct = evaluatorOf(s).evaluate({ src: ip(web), dst: ip(web), protocol: "TCP", port: 8080 });
    assert.deepEqual([direct.allowed, texts(direct, "ingress")], [true, ["[Self] to itself: Allow"]]);
    assert.equal(to(ip(db), ip(web), 8080).allowed, false, "another pod of prod: NetworkPolicy isolates db's egress");
  });

  test("a pod and its own node, a pod and itself, unknown metadata", () => {
    const s = byName("tier-unknown-metadata");
    const orphan = (s.endpoints ?? []).find((e) => e.pod === "orphan") as PodEndpoint;
    const v = check(s, { src: ip(web), dst: ip(orphan), protocol: "TCP", port: 8080 });
    assert.deepEqual(texts(v, "ingress"), ["[Sluice] pod or namespace unknown, isolated: Deny"]);
    assert.equal(v.egress.allowed, true);
    // Fail closed towards its own node too: an Admin rule it is not known to be selected by might deny that.
    assert.deepEqual(texts(check(s, { src: ip(orphan), dst: "192.168.0.1", protocol: "TCP", port: 22 }), "egress"), ["[Sluice] pod or namespace unknown, isolated: Deny"]);
    assert.equal(check(s, { src: ip(orphan), dst: "192.168.0.2", protocol: "TCP", port: 22 }).allowed, false);
    assert.deepEqual(texts(check(s, { src: "192.168.0.1", dst: ip(orphan), protocol: "TCP", port: 22 }), "ingress"), ["[Node] own node: Allow"]);
    const self = evaluatorOf(s).evaluate({ src: ip(orphan), dst: ip(orphan), protocol: "TCP", port: 1 });
    assert.deepEqual([self.allowed, texts(self, "egress")], [true, ["[Self] to itself: Allow"]]);
    assert.equal(check(s, { src: ip(orphan), dst: ip(orphan), protocol: "TCP", port: 1, hairpin: true }).allowed, false, "through a Service: isolated");
  });

  test("display names: NetworkPolicies as ns/name, cluster policies by name, rules by label", () => {
    const s = byName("tier-exclusions");
    const v = check(s, { src: ip(tool), dst: "192.0.2.7", protocol: "UDP", port: 53, srcPort: 53 });
    assert.deepEqual(texts(v, "egress"), ["[Admin] dev-dns no-dns-server-replies: Deny"]);
    assert.equal(v.egress.path[0]?.policyId, "gnp:dev-dns");
  });

  test("matrix: every pod to every pod, as evaluate says", () => {
    const s = byName("tier-baseline-after-np");
    const ev = evaluatorOf(s);
    const m = ev.matrix({ protocol: "TCP", port: 80 });
    assert.deepEqual(m.pods, ["dev/db", "dev/tool", "ops/monitor", "prod/api", "prod/db", "prod/web"]);
    const at = (from: string, to: string): boolean | undefined => m.cells[m.pods.indexOf(from)]?.[m.pods.indexOf(to)]?.allowed;
    assert.equal(at("dev/db", "prod/web"), true);
    assert.equal(at("prod/api", "prod/web"), false);
    assert.equal(at("dev/db", "prod/db"), false);
    assert.equal(at("prod/db", "prod/db"), true);
    const v6 = ev.matrix({ protocol: "TCP", port: 80 }, { family: 6 });
    assert.equal(v6.cells[v6.pods.indexOf("ops/monitor")]?.[0], undefined, "monitor has no IPv6 address");
  });
});

describe("policy tiers: structure", () => {
  test("endpoint chain: admin chains guarded by the pass bit, namespace tier, baseline after clearing the pass bit", () => {
    const s = byName("tier-baseline-pass");
    const r = renderT(s, 4);
    const chain = (n: string): string[] => r.chains.find((c) => c.name === n)?.rules ?? [];
    const [admin, b1, b2] = [policyChainName("egress", "cnp:web-443"), policyChainName("egress", "cnp:corp-pass"), policyChainName("egress", "cnp:egress-deny")];
    assert.deepEqual(chain(endpointChainName("egress", web.hostIface)).slice(3), [
      "-j MARK --set-xmark 0x0/0x30000",
      `-j ${admin}`, // it can only pass: no accept check after it
      "-j MARK --set-xmark 0x0/0x20000", // the admin pass must not skip the baseline
      `-j ${b1}`,
      `-m mark --mark 0x0/0x20000 -j ${b2}`, // skipped once b1 passed
      "-j RETURN",
    ]);
    assert.deepEqual(chain(admin), ["-p tcp -m tcp --dport 443 -j MARK --set-xmark 0x20000/0x20000"]);
    assert.deepEqual(chain(b2), ["-j DROP"]);
    // A pod that only the baseline selects: no clearing needed.
    assert.deepEqual(chain(endpointChainName("egress", db.hostIface)).slice(4), [`-j ${b1}`, `-m mark --mark 0x0/0x20000 -j ${b2}`, "-j RETURN"]);
    // Chains that can allow are followed by the accept check (the last baseline chain needs none: RETURN follows).
    const pass = renderT(byName("tier-admin-pass"), 4);
    const dbIn = pass.chains.find((c) => c.name === endpointChainName("ingress", db.hostIface))?.rules ?? [];
    assert.deepEqual(dbIn.slice(2), [
      "-j MARK --set-xmark 0x0/0x70000", // a NetworkPolicy selects db: the to-host bit too
      "-s 10.244.1.3/32 -j MARK --set-xmark 0x40000/0x40000", // from itself: a Service hairpin
      `-j ${policyChainName("ingress", "cnp:shared-services")}`,
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      `-m mark --mark 0x0/0x20000 -j ${policyChainName("ingress", "cnp:later-deny")}`,
      `-m mark --mark 0x0/0x40000 -j ${policyChainName("ingress", "prod/db-from-ops")}`,
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      "-m mark --mark 0x0/0x40000 -j DROP",
      "-j RETURN", // only a hairpin gets here: no baseline, default allow
    ]);
  });

  test("endpoint chain: to its own node and to itself, the admin tier, then past the NetworkPolicy tier to the baseline", () => {
    const r = renderT(byName("tier-own-node-and-self"), 4);
    const chain = (n: string): string[] => r.chains.find((c) => c.name === n)?.rules ?? [];
    assert.deepEqual(r.inputRules, ["-i slc+ -j MARK --set-xmark 0x40000/0x40000", "-i slc+ -j slc-from-wl"], "SLUICE-INPUT sets the to-host bit");
    assert.deepEqual(chain(endpointChainName("egress", web.hostIface)), [
      "! -s 10.244.1.2/32 -j DROP", // before the conntrack accept: no forged packet rides a flow
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-m conntrack --ctstate INVALID -j DROP",
      "-j MARK --set-xmark 0x0/0x30000", // the accept and pass bits; the to-host bit stays
      "-d 10.244.1.2/32 -j MARK --set-xmark 0x40000/0x40000", // to itself: a Service hairpin
      `-j ${policyChainName("egress", "cnp:prod-nodes-pass")}`,
      `-m mark --mark 0x0/0x40000 -j ${policyChainName("egress", "prod/no-egress")}`,
      "-m mark --mark 0x10000/0x10000 -j RETURN",
      "-m mark --mark 0x0/0x40000 -j DROP", // isolated, unless to its own node or itself
      "-j MARK --set-xmark 0x0/0x20000", // the admin pass must not skip the baseline
      `-j ${policyChainName("egress", "cnp:base")}`,
      "-j RETURN",
    ]);
    // dev/tool: no NetworkPolicy, so the bit is never looked at; its admin deny covers its own node.
    assert.deepEqual(chain(endpointChainName("egress", tool.hostIface)).slice(3), ["-j MARK --set-xmark 0x0/0x30000", `-j ${policyChainName("egress", "cnp:no-nodes-for-dev")}`, "-j RETURN"]);
  });

  test("log prefixes name the tier, direction, policy and rule in at most 29 characters", () => {
    const long: PolicyIR = cnp("a-very-long-cluster-network-policy-name", "admin", 1, everyPod, {});
    const p = logPrefix(long, "egress", 11);
    assert.ok(p.length <= LOG_PREFIX_MAX, p);
    assert.match(p, /^slc-Ae a-very-long-~[0-9a-f]{4} r12 $/);
    assert.equal(logPrefix(byName("tier-admin-deny-beats-np").policies[0] as PolicyIR, "ingress", 0), "slc-Ai tenant-isolation r1 ");
    assert.equal(logPrefix(byName("tier-admin-deny-beats-np").policies[1] as PolicyIR, "ingress", 0), "slc-Ni prod/allow-all r1 ");
  });

  test("rules grow with policies + local pods, never pods x pods", () => {
    const policies = scenarios.flatMap((s) => s.policies);
    const count = (n: number): { policyRules: number; maxEndpointRules: number } => {
      const many = Array.from({ length: n }, (_, k) => pod(k % 2 ? "prod" : "dev", `p${k}`, k % 3 ? NODE : REMOTE, `10.244.${k % 3 ? 1 : 2}.${100 + k}`, { app: k % 2 ? "web" : "db" }));
      const r = renderPolicyIr({ family: 4, nodeName: NODE, endpoints: [...endpoints, ...many], namespaces, nodes, networkSets, policies, sctpSupported: false });
      const perEndpoint = (name: string): boolean => /^slc-(fw|tw)-/.test(name);
      return {
        policyRules: r.chains.filter((c) => !perEndpoint(c.name) && !["slc-from-wl", "slc-to-wl"].includes(c.name)).reduce((k, c) => k + c.rules.length, 0),
        maxEndpointRules: Math.max(...r.chains.filter((c) => perEndpoint(c.name)).map((c) => c.rules.length)),
      };
    };
    const small = count(40);
    const large = count(400);
    assert.equal(large.policyRules, small.policyRules, "policy chains do not grow with pods");
    assert.ok(large.maxEndpointRules <= 10 + 2 * policies.length, `${large.maxEndpointRules} rules in one endpoint chain`);
  });

  test("an admin/baseline policy that can match nothing in a family gets no chain and no jump", () => {
    const s: Scenario = { name: "x", description: "", policies: [cnp("v6-only", "admin", 1, everyPod, { ingress: [rule("deny", [block("fd00::/8")])] })] };
    const r4 = render(s, 4);
    assert.ok(!r4.chains.some((c) => c.name === policyChainName("ingress", "cnp:v6-only")));
    assert.ok(render(s, 6).chains.some((c) => c.name === policyChainName("ingress", "cnp:v6-only")));
  });

  test("fromModel uses the model's nodes and network sets; EndpointIndex-built evaluators take them as context", () => {
    const s = byName("tier-nodes-sets-allof");
    const viaModel = evaluatorOf(s).evaluate({ src: ip(tool), dst: "198.51.100.9", protocol: "TCP", port: 80 });
    assert.deepEqual(texts(viaModel, "egress"), ["[Admin] sets rule 2: Deny"]);
    const bare = new PolicyEvaluator(s.policies, new EndpointIndex(endpoints, namespaces), { sctpSupported: false });
    assert.equal(bare.evaluate({ src: ip(tool), dst: "198.51.100.9", protocol: "TCP", port: 80 }).allowed, true, "without network sets the set is empty");
  });

  test("an ipBlock of the whole space except one half: the set is one ipset can hold, and it matches as the evaluator says", () => {
    // Valid NetworkPolicy (except strictly within cidr); ipset holds /0 as two /1 halves, so
    // the excepted half must not also be listed without nomatch (planPrepare refuses that,
    // and with it every policy update on the node).
    const s: Scenario = {
      name: "x",
      description: "",
      policies: [knp("prod", "upper-half", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["0.0.0.0/1"] } }, { ipBlock: { cidr: "::/0", except: ["8000::/1"] } }] }] })],
    };
    for (const family of [4, 6] as const) {
      const r = render(s, family);
      assert.doesNotThrow(() => planPrepare(family, r.ipsets, new Map()), `IPv${family} sets`);
      crossCheck(clusterOf(s, family), evaluatorOf(s), EXTERNALS, PROBES);
    }
    assert.equal(check(s, { src: ip(api), dst: ip(web), protocol: "TCP", port: 80 }).allowed, false, "10.244.2.4 is in the excepted half");
    assert.equal(check(s, { src: "192.0.2.7", dst: ip(web), protocol: "TCP", port: 80 }).allowed, true);
    assert.equal(check(s, { src: "2001:db8::1", dst: ip(web, 6), protocol: "TCP", port: 80 }).allowed, true, "2001:db8::1 is in ::/1");
    assert.equal(check(s, { src: ip(api, 6), dst: ip(web, 6), protocol: "TCP", port: 80 }).allowed, false, "fd00:244:2::4 is in the excepted 8000::/1");
  });

  test("deterministic: input order does not matter", () => {
    for (const s of scenarios) {
      const m = modelOf(s);
      const a = renderPolicyModel({ family: 4, nodeName: NODE, model: m, sctpSupported: false });
      const b = renderPolicyModel({ family: 4, nodeName: NODE, model: { ...m, endpoints: [...m.endpoints].reverse(), policies: [...m.policies].reverse(), nodes: [...m.nodes].reverse(), networkSets: [...m.networkSets].reverse() }, sctpSupported: false });
      assert.deepEqual(b, a, s.name);
    }
  });
});

// ---------------------------------------------------------------- random IR (seeded)

function randomScenario(rnd: () => number, round: number): Scenario {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const maybe = (p = 0.5): boolean => rnd() < p;
  const list = <T>(f: () => T, min: number, max: number): T[] => Array.from({ length: min + Math.floor(rnd() * (max - min + 1)) }, f);
  const podSet = (): PodSet => pick([inNs(pick(["prod", "dev", "ops"])), inNs("prod", { app: pick(["web", "db", "api"]) }), inNsSel({ team: "shop" }), everyPod, inNsSel({}, { app: "db" })]);
  const simplePeer = (): Peer =>
    pick<() => Peer>([
      () => any,
      () => pods(podSet()),
      () => block(pick(["10.244.0.0/16", "10.244.1.0/24", "192.0.2.0/24", "0.0.0.0/0", "fd00:244::/32", "::/0", "10.0.0.0/8"]), ...(maybe(0.3) ? [pick(["10.244.2.0/24", "fd00:244:2::/64", "192.0.2.0/28"])] : [])),
      () => ({ kind: "nodes", nodes: sel(pick<Record<string, string>>([{ role: "worker" }, { zone: "b" }, { role: "infra" }, {}])) }),
      () => ({ kind: "networkSets", sets: { namespaces: pick(["global", { kind: "name", name: "dev" }, { kind: "selector", selector: sel({ team: "shop" }) }] as const), selector: sel(pick<Record<string, string>>([{ kind: "corp" }, { kind: "partner" }, {}])) } }),
    ])();
  const peer = (): Peer => (maybe(0.15) ? { kind: "allOf", peers: list(simplePeer, 1, 3) } : simplePeer());
  const portSpec = (): PortSpec =>
    pick<PortSpec>([tcp(80), tcp(80, 90), tcp(85), udp(53), { kind: "protocol", protocol: "TCP" }, { kind: "protocol", protocol: "TCP" }, { kind: "protocol", protocol: "UDP" }, sctp(80), sctp(1, 80), { kind: "protocol", protocol: "SCTP" }, { kind: "named", protocol: "TCP", name: "http" }, { kind: "named", protocol: "UDP", name: "dns" }, icmp4(), icmp4(), icmp4(8), icmp4(8, 0), icmp4(3, 1), icmp6(), icmp6(), icmp6(128), icmp6(129, 0)]);
  const notPortSpec = (): PortSpec => pick<PortSpec>([tcp(85), tcp(80), tcp(0, 1023), udp(53), icmp4(8), icmp4(3, 1), icmp6(128), { kind: "protocol", protocol: "UDP" }, { kind: "named", protocol: "TCP", name: "http" }, sctp(9), sctp(80)]);
  const srcSpec = (): PortSpec => pick<PortSpec>([tcp(1024, 65535), tcp(53), udp(53), tcp(40001), { kind: "named", protocol: "UDP", name: "dns" }, { kind: "protocol", protocol: "UDP" }]);
  const ruleOf = (tier: PolicyIR["tier"]): RuleIR => {
    const r: RuleIR = { action: tier === "namespace" ? pick<RuleAction>(["allow", "allow", "allow", "log", "deny"]) : pick<RuleAction>(["allow", "deny", "pass", "log"]), peers: list(peer, 0, 2), ports: maybe(0.4) ? "all" : list(portSpec, 0, 2) };
    if (maybe(0.1)) r.peers = [];
    if (r.peers.length === 0 && !maybe(0.1)) r.peers = [any];
    if (maybe(0.25)) r.notPeers = list(peer, 1, 2);
    if (maybe(0.25)) r.notPorts = list(notPortSpec, 1, 2);
    if (maybe(0.2)) r.srcPorts = list(srcSpec, 1, 2);
    if (maybe(0.15)) r.notSrcPorts = list(srcSpec, 1, 1);
    if (maybe(0.15)) r.self = { peers: list(simplePeer, 1, 2), notPeers: maybe() ? [simplePeer()] : [] };
    return r;
  };
  const policies: PolicyIR[] = [];
  const count = 1 + Math.floor(rnd() * 5);
  for (let k = 0; k < count; k++) {
    const tier = pick<PolicyIR["tier"]>(["admin", "admin", "namespace", "baseline"]);
    const rules = (): RuleIR[] | undefined => (maybe(0.7) ? list(() => ruleOf(tier), tier === "namespace" ? 0 : 1, 3) : undefined);
    const name = `r${round}p${k}`;
    const base = { tier, subject: tier === "namespace" ? inNs(pick(["prod", "dev", "ops"]), maybe() ? { app: pick(["web", "db"]) } : {}) : podSet(), ingress: rules(), egress: rules() };
    if (tier === "namespace") policies.push({ ...base, id: `${base.subject.namespaces.kind === "name" ? base.subject.namespaces.name : "x"}/${name}`, priority: 0, origin: { kind: "NetworkPolicy", namespace: "x", name } });
    else if (maybe(0.3)) policies.push({ ...base, tier: "admin", id: `gnp:${name}`, priority: 1_000_000 + Math.floor(rnd() * 3), origin: { kind: "GlobalNetworkPolicy", name } });
    else policies.push({ ...base, id: `cnp:${name}`, priority: Math.floor(rnd() * 3), origin: { kind: "ClusterNetworkPolicy", name } });
  }
  const orphan = maybe(0.2) ? [{ ...pod("prod", "orphan", NODE, "10.244.1.60 fd00:244:1::60", { app: "web" }), metadataKnown: false }] : [];
  return { name: `random-${round}`, description: "", policies, endpoints: [...endpoints, ...orphan], sctp: maybe() };
}

describe("policy tiers: randomized IR (seeded), every construct and tier (renderer against evaluator)", () => {
  test("simulated chains agree with the evaluator, verdicts and LOG lines, both families", () => {
    const rnd = mulberry32(5150);
    let flows = 0;
    const seen = new Map<string, number>();
    const saw = (what: string): void => void seen.set(what, (seen.get(what) ?? 0) + 1);
    for (let round = 0; round < 40; round++) {
      const s = randomScenario(rnd, round);
      for (const family of [4, 6] as const) {
        const cl = clusterOf(s, family);
        for (const c of cl.nodes.get(NODE)?.render.chains ?? []) {
          if (/^slc-r[io]-/.test(c.name)) saw("rule chain");
          if (/^slc-l[io]-/.test(c.name)) saw("log chain");
          for (const r of ruleTexts(c.rules)) for (const m of ["! --match-set", "! --dport", "! --sport", "--sport", "! --icmp-type", "--icmp-type", "--icmpv6-type", "-j LOG", "-j DROP", "0x20000/0x20000", "-m mark --mark 0x0/0x20000 -j"]) if (r.includes(m)) saw(m);
        }
        try {
          flows += crossCheck(cl, evaluatorOf(s), EXTERNALS, PROBES, { prefixOf: prefixOf(s.policies) });
        } catch (e) {
          throw new Error(`round ${round}, family ${family}: ${(e as Error).message}\npolicies: ${JSON.stringify(s.policies)}`);
        }
      }
    }
    console.log(`# random tiers: ${flows} flows; constructs rendered: ${[...seen].map(([k, v]) => `${k} x${v}`).join(", ")}`);
    assert.ok(flows > 50_000, `only ${flows} flows checked`);
    assert.equal(seen.size, 13, `every construct rendered at least once: ${[...seen.keys()].join(", ")}`);
  });
});
