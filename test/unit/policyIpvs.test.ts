/**
 * kube-proxy in IPVS mode (src/render/kubeIpvs.ts): Service traffic goes INPUT -> IPVS ->
 * OUTPUT, never FORWARD. The simulated chains (test/helpers/policySim.ts: simulateIpvs runs
 * that netfilter path hop by hop) must give every Service connection the reference
 * evaluator's verdict for the client -> backend connection it becomes: seeded random
 * NetworkPolicies (both families), hand-made tier cases (verdicts and LOG lines), and the
 * intents one at a time, each also shown to be wrong without the IPVS path.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { networkPolicyObject } from "../../src/config/k8sSchemas.js";
import { type NamespaceInfo, type PodEndpoint, hostIfaceName } from "../../src/model/endpoint.js";
import type { Family } from "../../src/model/ip.js";
import { type Connection, PolicyEvaluator } from "../../src/policy/evaluate.js";
import { EndpointIndex } from "../../src/policy/endpointIndex.js";
import type { Direction, PolicyIR } from "../../src/policy/ir.js";
import type { NodeInfo } from "../../src/policy/model.js";
import { networkPolicyToIr } from "../../src/policy/networkPolicy.js";
import { normalizeSelector } from "../../src/policy/selectors.js";
import { CHAIN_IPVS, CHAIN_IPVS_FROM_WL, withKubeIpvs } from "../../src/render/kubeIpvs.js";
import { endpointChainName, logPrefix, renderPolicyIr } from "../../src/render/policy.js";
import { renderText } from "../helpers/ruleText.js";
import { mulberry32 } from "../helpers/golden.js";
import { DEFAULT_SPORT, Node, type Packet, SERVICE_VIP, type SimCluster, UPLINK, VXLAN, crossCheck, crossCheckIpvs, simulateIpvs } from "../helpers/policySim.js";
import { RANDOM_NP_NODES, RANDOM_NP_ROUNDS, RANDOM_NP_SEED, randomNetworkPolicyScenario } from "../helpers/randomNetworkPolicies.js";

const [N1, N2] = RANDOM_NP_NODES;
const H1 = "192.168.0.1";
const H2 = "192.168.0.2";
const HOST_IP: Record<string, Record<Family, string>> = { [N1]: { 4: H1, 6: "fd99::1" }, [N2]: { 4: H2, 6: "fd99::2" } };
const NODE_INFO: NodeInfo[] = Object.entries(HOST_IP).map(([name, a]) => ({ name, labels: {}, addresses: [a[4], a[6]] }));
const EXTERNALS = ["192.0.2.7", "10.244.2.77", "2001:db8::1", "fd00:244:2::77"];
const PROBES: ReadonlyArray<Omit<Connection, "src" | "dst">> = [
  { protocol: "TCP", port: 80 },
  { protocol: "TCP", port: 8080 },
  { protocol: "UDP", port: 53 },
  { protocol: "SCTP", port: 80 },
  { protocol: "ICMP", port: 0 },
];

const namespaces: NamespaceInfo[] = [
  { name: "shop", labels: { team: "shop" } },
  { name: "ops", labels: { team: "ops" } },
];
const pod = (namespace: string, name: string, node: string, ips: string, labels: Record<string, string>): PodEndpoint => ({ namespace, pod: name, node, hostIface: hostIfaceName(namespace, name), ips: ips.split(" "), labels, ports: [] });
// The client and one backend on n1, the other backend and a bystander on n2.
const client = pod("shop", "client", N1, "10.244.1.2 fd00:244:1::2", { app: "client" });
const local = pod("shop", "local", N1, "10.244.1.3 fd00:244:1::3", { app: "backend", at: "local" });
const remote = pod("shop", "remote", N2, "10.244.2.4 fd00:244:2::4", { app: "backend", at: "remote" });
const monitor = pod("ops", "monitor", N2, "10.244.2.5 fd00:244:2::5", { app: "monitor" });
const endpoints = [client, local, remote, monitor];

const np = (namespace: string, name: string, spec: unknown): PolicyIR => {
  const ir = networkPolicyToIr(networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace, name }, spec }));
  return { ...ir, origin: { kind: "NetworkPolicy", namespace, name } };
};

interface Setup {
  cluster: SimCluster;
  evaluator: PolicyEvaluator;
}

/** Both nodes' simulated tables for `policies`; `kubeIpvs`: with the IPVS path (default) or without it (the agent before it). */
function setup(policies: PolicyIR[], family: Family = 4, o: { kubeIpvs?: boolean; endpoints?: PodEndpoint[]; namespaces?: NamespaceInfo[]; sctp?: boolean } = {}): Setup {
  const eps = o.endpoints ?? endpoints;
  const nss = o.namespaces ?? namespaces;
  const sctpSupported = o.sctp ?? true;
  const nodes = new Map<string, Node>();
  for (const n of RANDOM_NP_NODES) {
    const render = renderPolicyIr({ family, nodeName: n, endpoints: eps, namespaces: nss, nodes: NODE_INFO, policies, sctpSupported });
    nodes.set(n, new Node(n, render, family, { kubeIpvs: o.kubeIpvs ?? true }));
  }
  const known = eps.filter((e) => e.metadataKnown !== false);
  const evaluator = new PolicyEvaluator(policies, new EndpointIndex(known, nss), { sctpSupported }, { nodes: NODE_INFO, unknownEndpoints: eps.filter((e) => e.metadataKnown === false) });
  return { cluster: { family, endpoints: eps, nodes, hostIp: HOST_IP }, evaluator };
}

const tcp80 = (src: string, dst: string): Connection => ({ src, dst, protocol: "TCP", port: 80, srcPort: DEFAULT_SPORT });
const v4 = (e: PodEndpoint): string => e.ips[0] as string;

/** Through the Service on n1, with and without the IPVS path, and what the evaluator says. */
function viaService(policies: PolicyIR[], src: string, backend: PodEndpoint): { ipvs: boolean; without: boolean; evaluator: boolean } {
  const c = tcp80(src, v4(backend));
  const on = setup(policies);
  const off = setup(policies, 4, { kubeIpvs: false });
  return { ipvs: simulateIpvs(on.cluster, c, N1).allowed, without: simulateIpvs(off.cluster, c, N1).allowed, evaluator: on.evaluator.evaluate(c).allowed };
}

describe("kube-proxy IPVS path: what each rule is for", () => {
  test("without kube-ipvs0 nothing changes; with it, the INPUT mark, the OUTPUT dispatch and two chains, and nothing else", () => {
    const two = pod("shop", "two", N1, "10.244.1.60 10.244.1.61", { app: "client" });
    const twin = pod("shop", "twin", N1, "10.244.1.61", { app: "client" }); // claims two's second address
    const eps = [...endpoints, two, twin];
    const rendered = renderPolicyIr({ family: 4, nodeName: N1, endpoints: eps, namespaces, policies: [], sctpSupported: true });
    const r = renderText(rendered);
    assert.equal(r.chains.some((c) => c.name.startsWith(CHAIN_IPVS)), false, "the policy render alone has no IPVS path");
    const w = renderText(withKubeIpvs(rendered, 4, ["10.96.0.10", "10.96.0.1", "fd00:96::a"].filter((a) => !a.includes(":"))));
    assert.deepEqual(w.forwardRules, r.forwardRules);
    // A pod's packet to a Service address keeps the to-host mark and skips its egress chain in INPUT (judged in OUTPUT).
    const toPods = r.inputRules.indexOf("-i slc+ -j slc-from-wl");
    assert.deepEqual(w.inputRules, ["-j MARK --set-xmark 0x80000/0x80000", ...r.inputRules.slice(0, toPods), "-i slc+ -m set --match-set slc4-ipvs-services dst -j RETURN", ...r.inputRules.slice(toPods)]);
    assert.deepEqual(w.outputRules, ["-m mark --mark 0x80000/0x80000 -j slc-ipvs", ...r.outputRules]);
    assert.deepEqual(w.chains.slice(0, r.chains.length), r.chains);
    assert.deepEqual(w.ipsets, [...r.ipsets, { name: "slc4-ipvs-services", type: "hash:ip", family: 4, members: ["10.96.0.1", "10.96.0.10"] }]);
    const chain = (n: string): string[] | undefined => w.chains.find((c) => c.name === n)?.rules;
    assert.deepEqual(chain(CHAIN_IPVS), ["-j MARK --set-xmark 0x0/0x80000", `-m mark --mark 0x40000/0x40000 -j ${CHAIN_IPVS_FROM_WL}`, "-o slc+ -j slc-to-wl"]);
    const fw = (e: PodEndpoint): string => endpointChainName("egress", e.hostIface);
    const bySource = [client, local, two]
      .sort((a, b) => (a.hostIface < b.hostIface ? -1 : 1))
      .flatMap((e) => e.ips.filter((a) => !a.includes(":") && a !== "10.244.1.61").map((a) => `-s ${a}/32 -g ${fw(e)}`));
    assert.deepEqual(chain(CHAIN_IPVS_FROM_WL), ["-j MARK --set-xmark 0x0/0x40000", ...bySource, "-j DROP"], "one line per address of a local pod; an address two pods claim names neither");
    assert.equal(w.chains.length, r.chains.length + 2);
    const six = renderText(withKubeIpvs(renderPolicyIr({ family: 6, nodeName: N1, endpoints, namespaces, policies: [], sctpSupported: true }), 6, ["fd00:96::a"]));
    assert.ok(six.chains.find((c) => c.name === CHAIN_IPVS_FROM_WL)?.rules.includes(`-s fd00:244:1::2/128 -g ${fw(client)}`));
  });

  test("the client's egress policy applies to Service traffic, against the backend's address (not the Service's)", () => {
    const onlyRemote = np("shop", "client-to-remote", { podSelector: { matchLabels: { app: "client" } }, policyTypes: ["Egress"], egress: [{ to: [{ podSelector: { matchLabels: { at: "remote" } } }] }] });
    assert.deepEqual(viaService([onlyRemote], v4(client), local), { ipvs: false, without: true, evaluator: false }, "to the local backend: denied (IPVS used to let it through)");
    assert.deepEqual(viaService([onlyRemote], v4(client), remote), { ipvs: true, without: true, evaluator: true }, "to the remote backend: allowed");
    const denyAll = np("shop", "no-egress", { podSelector: { matchLabels: { app: "client" } }, policyTypes: ["Egress"] });
    assert.deepEqual(viaService([denyAll], v4(client), remote), { ipvs: false, without: true, evaluator: false }, "an egress deny-all holds for a remote backend too");
  });

  test("a local backend's ingress policy applies to Service traffic, from pods and from outside the node", () => {
    const denyIn = np("shop", "backends-from-monitor", { podSelector: { matchLabels: { app: "backend" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "ops" } } }] }] });
    assert.deepEqual(viaService([denyIn], v4(client), local), { ipvs: false, without: true, evaluator: false }, "pod client, local backend");
    assert.deepEqual(viaService([denyIn], "192.0.2.7", local), { ipvs: false, without: true, evaluator: false }, "a client outside the cluster (NodePort, external IP)");
    assert.deepEqual(viaService([denyIn], H2, local), { ipvs: false, without: true, evaluator: false }, "another node");
    assert.deepEqual(viaService([denyIn], v4(client), remote), { ipvs: false, without: false, evaluator: false }, "a remote backend's own node judged it all along");
    const allowClient = np("shop", "backends-from-client", { podSelector: { matchLabels: { app: "backend" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }] }] });
    assert.deepEqual(viaService([allowClient], v4(client), local), { ipvs: true, without: true, evaluator: true });
  });

  test("what the node itself sends through a Service is host -> pod (always allowed, as in iptables mode); a pod reaching itself through a Service is allowed", () => {
    const isolated = np("shop", "isolate-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
    assert.deepEqual(viaService([isolated], H1, local), { ipvs: true, without: true, evaluator: true });
    assert.deepEqual(viaService([isolated], v4(client), client), { ipvs: true, without: true, evaluator: true }, "hairpin");
  });

  test("in OUTPUT: a marked packet whose source is no local pod is dropped; our marks are cleared, the others' kept; established packets pass", () => {
    const { cluster } = setup([np("shop", "isolate-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] })]);
    const n1 = cluster.nodes.get(N1) as Node;
    const out = (p: Partial<Packet>): { verdict: string; mark: number } => {
      const pk: Packet = { src: v4(client), dst: v4(remote), proto: "tcp", dport: 80, sport: DEFAULT_SPORT, ctstate: "NEW", mark: 0x4000 | 0x80000 | 0x40000, outIface: VXLAN, ...p };
      const verdict = n1.output(pk);
      return { verdict, mark: pk.mark };
    };
    assert.equal(out({ src: "10.244.1.99" }).verdict, "DROP", "no local pod has that address");
    assert.equal(out({}).verdict, "DROP", "the isolated client's egress");
    assert.deepEqual(out({ ctstate: "ESTABLISHED" }), { verdict: "ACCEPT", mark: 0x4000 }, "established: accepted, our bits cleared, kube-proxy's kept");
    assert.deepEqual(out({ mark: 0x4000 | 0x80000, src: "192.0.2.7" }), { verdict: "RETURN", mark: 0x4000 }, "from outside to a remote pod: that node judges it");
    assert.equal(out({ mark: 0x4000, outIface: local.hostIface, src: H1, dst: v4(local) }).verdict, "ACCEPT", "the node's own traffic: unmarked");
    // The encapsulating VXLAN packet inherits the inner packet's (now cleared) mark.
    const { cluster: open } = setup([]);
    const p: Packet = { src: v4(client), dst: SERVICE_VIP[4], proto: "tcp", dport: 80, sport: DEFAULT_SPORT, ctstate: "NEW", mark: 0, inIface: client.hostIface };
    const o1 = open.nodes.get(N1) as Node;
    assert.equal(o1.input(p), true);
    assert.equal(p.mark, 0x80000 | 0x40000, "INPUT marks it: entered here, from a pod");
    delete p.inIface;
    const inner: Packet = { ...p, dst: v4(remote), outIface: VXLAN };
    assert.equal(o1.output(inner), "RETURN");
    assert.equal(inner.mark, 0, "both bits cleared on the way out");
    assert.equal(o1.output({ src: H1, dst: H2, proto: "udp", dport: 8472, ctstate: "NEW", mark: inner.mark, outIface: UPLINK }), "RETURN", "so the VXLAN packet around it is the node's own");
    assert.equal(o1.output({ src: H1, dst: H2, proto: "udp", dport: 8472, ctstate: "NEW", mark: 0x80000 | 0x40000, outIface: UPLINK }), "DROP", "had they stayed, it would be taken for a pod's");
  });
});

describe("kube-proxy IPVS path: simulated chains against the reference evaluator", () => {
  test("seeded random NetworkPolicies, both families: every Service flow gets the evaluator's verdict, and every other flow keeps it", () => {
    const rnd = mulberry32(RANDOM_NP_SEED);
    let flows = 0;
    let denied = 0;
    let wrongWithout = 0;
    for (let round = 0; round < RANDOM_NP_ROUNDS; round++) {
      const sc = randomNetworkPolicyScenario(rnd);
      const policies = sc.policies.map(networkPolicyToIr);
      for (const family of [4, 6] as const) {
        const { cluster, evaluator } = setup(policies, family, { endpoints: sc.endpoints, namespaces: sc.namespaces, sctp: sc.sctp });
        const counting: PolicyEvaluator = Object.create(evaluator) as PolicyEvaluator;
        counting.evaluate = (c) => {
          const v = evaluator.evaluate(c);
          if (!v.allowed) denied++;
          return v;
        };
        try {
          flows += crossCheckIpvs(cluster, counting, EXTERNALS, PROBES);
          crossCheck(cluster, evaluator, EXTERNALS, PROBES);
        } catch (e) {
          throw new Error(`round ${round}, family ${family}: ${(e as Error).message}\npolicies: ${JSON.stringify(sc.raw)}`);
        }
        const off = setup(policies, family, { endpoints: sc.endpoints, namespaces: sc.namespaces, sctp: sc.sctp, kubeIpvs: false }).cluster;
        for (const e of sc.endpoints.filter((x) => x.node === N1)) {
          for (const b of sc.endpoints) {
            const [src, dst] = [e.ips.find((a) => a.includes(":") === (family === 6)), b.ips.find((a) => a.includes(":") === (family === 6))];
            if (src === undefined || dst === undefined) continue;
            if (simulateIpvs(off, tcp80(src, dst), N1).allowed !== evaluator.evaluate(tcp80(src, dst)).allowed) wrongWithout++;
          }
        }
      }
    }
    console.log(`# IPVS, random NetworkPolicies: ${flows} Service flows, ${denied} denied; ${wrongWithout} pod flows the rules before the IPVS path got wrong`);
    assert.ok(flows > 20_000, `only ${flows} flows checked`);
    assert.ok(denied > flows / 10 && denied < flows - flows / 10, `${denied} of ${flows} denied: the policies must decide both ways`);
    assert.ok(wrongWithout > 100, "the same scenarios catch the missing path");
  });

  test("the Service address itself is judged by no tier: an Admin Deny of every network after an Accept of the backends lets Service traffic to a backend through", () => {
    const sel = (labels: Record<string, string>) => normalizeSelector({ matchLabels: labels });
    const backends = { namespaces: { kind: "name" as const, name: "shop" }, pods: sel({ app: "backend" }) };
    const guard: PolicyIR = {
      id: "cnp:only-backends",
      tier: "admin",
      priority: 1,
      subject: { namespaces: { kind: "name", name: "shop" }, pods: sel({ app: "client" }) },
      ingress: undefined,
      egress: [
        { action: "allow", peers: [{ kind: "pods", pods: backends }], ports: "all" },
        { action: "deny", peers: [{ kind: "ipBlock", cidr: "0.0.0.0/0", except: [] }, { kind: "ipBlock", cidr: "::/0", except: [] }], ports: "all" },
      ],
      origin: { kind: "ClusterNetworkPolicy", name: "only-backends" },
    };
    // In INPUT the packet is still for the Service address, which the Deny covers: the pod's
    // own-node path meets the Admin tier, so without the IPVS rules (and their exemption of
    // Service addresses) the Service is denied whatever its backend.
    assert.deepEqual(viaService([guard], v4(client), local), { ipvs: true, without: false, evaluator: true }, "to the local backend");
    assert.deepEqual(viaService([guard], v4(client), remote), { ipvs: true, without: false, evaluator: true }, "to the remote backend");
    assert.equal(viaService([guard], v4(client), monitor).ipvs, false, "a Service whose backend is no backend pod: the Deny, judged against the backend");
  });

  test("the tiers: Admin deny and pass, Baseline, log rules (LOG lines in order) on the IPVS path", () => {
    const sel = (labels: Record<string, string>) => normalizeSelector({ matchLabels: labels });
    const shop = { namespaces: { kind: "name" as const, name: "shop" }, pods: sel({}) };
    const backends = { namespaces: { kind: "name" as const, name: "shop" }, pods: sel({ app: "backend" }) };
    const policies: PolicyIR[] = [
      {
        id: "cnp:egress-guard",
        tier: "admin",
        priority: 1,
        subject: { namespaces: { kind: "name", name: "shop" }, pods: sel({ app: "client" }) },
        ingress: undefined,
        egress: [
          { action: "log", peers: [{ kind: "pods", pods: backends }], ports: [{ kind: "range", protocol: "TCP", from: 80, to: 80 }] },
          { action: "deny", peers: [{ kind: "ipBlock", cidr: "10.244.2.0/24", except: [] }], ports: [{ kind: "protocol", protocol: "UDP" }] },
          { action: "pass", peers: [{ kind: "pods", pods: backends }], ports: "all" },
        ],
        origin: { kind: "ClusterNetworkPolicy", name: "egress-guard" },
      },
      {
        id: "cnp:backend-baseline",
        tier: "baseline",
        priority: 0,
        subject: backends,
        egress: undefined,
        ingress: [
          { action: "log", peers: [{ kind: "any" }], ports: "all" },
          { action: "allow", peers: [{ kind: "pods", pods: shop }], ports: [{ kind: "range", protocol: "TCP", from: 80, to: 8080 }] },
          { action: "deny", peers: [{ kind: "any" }], ports: "all" },
        ],
        origin: { kind: "ClusterNetworkPolicy", name: "backend-baseline" },
      },
      np("shop", "remote-only-tcp", { podSelector: { matchLabels: { at: "remote" } }, ingress: [{ ports: [{ port: 80 }, { protocol: "UDP", port: 53 }] }] }),
    ];
    const prefixOf = (step: { policyId?: string | undefined; ruleIndex?: number | undefined }, d: Direction): string => {
      const p = policies.find((x) => x.id === step.policyId);
      assert.ok(p && step.ruleIndex !== undefined);
      return logPrefix(p, d, step.ruleIndex);
    };
    let flows = 0;
    for (const family of [4, 6] as const) {
      const { cluster, evaluator } = setup(policies, family);
      flows += crossCheckIpvs(cluster, evaluator, EXTERNALS, PROBES, { prefixOf });
      crossCheck(cluster, evaluator, EXTERNALS, PROBES, { prefixOf });
    }
    assert.ok(flows > 200, `${flows} flows`);
  });
});
