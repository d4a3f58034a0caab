/**
 * The incremental render against the full one: for thousands of random change sequences
 * (pod labels, addresses, named ports, pods added and removed, pods whose metadata goes
 * missing, namespace labels, namespaces appearing, policies of every tier added, changed
 * and deleted, nodes and network sets changing), a render that reuses its memo gives
 * exactly the render of the final state from scratch, in both families. And it does reuse:
 * a remote pod's label change recomputes only the sets whose members it moves.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { NamespaceInfo, PodEndpoint } from "../../src/model/endpoint.js";
import type { Family } from "../../src/model/ip.js";
import type { NetworkSetInfo, NodeInfo } from "../../src/policy/model.js";
import type { Peer, PodSet, PolicyIR, RuleIR } from "../../src/policy/ir.js";
import { networkPolicyToIr } from "../../src/policy/networkPolicy.js";
import { renderPolicyIr } from "../../src/render/policy.js";
import { RenderMemo } from "../../src/render/renderMemo.js";
import { mulberry32 } from "../helpers/golden.js";
import { RANDOM_NP_NODES, randomNetworkPolicyScenario } from "../helpers/randomNetworkPolicies.js";

const [LOCAL] = RANDOM_NP_NODES;
const SEQUENCES = Number(process.env["RENDER_MEMO_SEQUENCES"] ?? 1500);
const STEPS = 6;

interface World {
  endpoints: PodEndpoint[];
  namespaces: NamespaceInfo[];
  nodes: NodeInfo[];
  networkSets: NetworkSetInfo[];
  policies: PolicyIR[];
  sctp: boolean;
}

type Rnd = () => number;
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;

/** Admin/baseline policies with the peers NetworkPolicy cannot express: nodes, network sets, allOf, named ports, deny and pass. */
function clusterPolicy(rnd: Rnd, k: number): PolicyIR {
  const subject: PodSet = pick(rnd, [
    { namespaces: { kind: "selector", selector: {} }, pods: {} },
    { namespaces: { kind: "name", name: pick(rnd, ["a", "b", "c"]) }, pods: { matchLabels: { app: pick(rnd, ["web", "db", "api"]) } } },
    { namespaces: { kind: "selector", selector: { matchLabels: { team: "x" } } }, pods: {} },
  ]);
  const peer = (): Peer =>
    pick<Peer>(rnd, [
      { kind: "nodes", nodes: { matchLabels: { role: pick(rnd, ["w", "m"]) } } },
      { kind: "networkSets", sets: { namespaces: "global", selector: { matchLabels: { zone: pick(rnd, ["1", "2"]) } } } },
      { kind: "networkSets", sets: { namespaces: { kind: "selector", selector: {} }, selector: {} } },
      { kind: "pods", pods: { namespaces: { kind: "selector", selector: { matchExpressions: [{ key: "env", operator: "Exists" }] } }, pods: { matchLabels: { tier: "1" } } } },
      { kind: "allOf", peers: [{ kind: "pods", pods: { namespaces: { kind: "selector", selector: {} }, pods: {} } }, { kind: "ipBlock", cidr: "10.244.0.0/16", except: ["10.244.2.0/24"] }] },
    ]);
  const rule = (): RuleIR => ({
    action: pick(rnd, ["allow", "deny", "pass", "log"] as const),
    peers: [peer()],
    ports: rnd() < 0.5 ? "all" : [pick(rnd, [{ kind: "named", name: "http", protocol: "TCP" } as const, { kind: "range", protocol: "TCP", from: 80, to: 80 } as const])],
  });
  const tier = rnd() < 0.6 ? "admin" : "baseline";
  return { id: `cnp:c${k}`, tier, priority: Math.floor(rnd() * 5), subject, ingress: rnd() < 0.8 ? [rule(), rule()] : undefined, egress: rnd() < 0.5 ? [rule()] : undefined, origin: { kind: "ClusterNetworkPolicy", name: `c${k}` } };
}

function randomNodes(rnd: Rnd): NodeInfo[] {
  return ["n1", "n2", "n3"].filter(() => rnd() < 0.8).map((name, i) => ({ name, labels: { role: pick(rnd, ["w", "m"]) }, addresses: [`192.168.0.${i + 1}`, `fd00:1::${i + 1}`] }));
}

function randomNetworkSets(rnd: Rnd): NetworkSetInfo[] {
  const all: NetworkSetInfo[] = [
    { namespace: undefined, name: "g1", labels: { zone: pick(rnd, ["1", "2"]) }, nets: ["198.51.100.0/24", "2001:db8::/48"] },
    { namespace: pick(rnd, ["a", "b", "c", "d"]), name: "s1", labels: {}, nets: [pick(rnd, ["203.0.113.0/25", "203.0.113.128/25"])] },
  ];
  return all.filter(() => rnd() < 0.8);
}

function initialWorld(rnd: Rnd): World {
  const s = randomNetworkPolicyScenario(rnd);
  const policies = [...s.policies.map(networkPolicyToIr), ...Array.from({ length: Math.floor(rnd() * 3) }, (_, k) => clusterPolicy(rnd, k))];
  return { endpoints: s.endpoints, namespaces: s.namespaces, nodes: randomNodes(rnd), networkSets: randomNetworkSets(rnd), policies, sctp: s.sctp };
}

/** One random change, as a datastore would deliver it: new objects for what changed, the rest as it was. */
function change(rnd: Rnd, w: World, step: number): { world: World; what: string } {
  const eps = w.endpoints;
  const i = Math.floor(rnd() * Math.max(1, eps.length));
  const ep = eps[i];
  const replace = (next: PodEndpoint | undefined): PodEndpoint[] => (ep === undefined ? (next ? [next] : []) : [...eps.slice(0, i), ...(next ? [next] : []), ...eps.slice(i + 1)]);
  const r = rnd();
  if (ep && r < 0.25) {
    const labels = { ...ep.labels };
    const key = pick(rnd, ["app", "tier"]);
    if (rnd() < 0.3) delete labels[key];
    else labels[key] = key === "app" ? pick(rnd, ["web", "db", "api"]) : pick(rnd, ["1", "2"]);
    return { world: { ...w, endpoints: replace({ ...ep, labels }) }, what: `labels of ${ep.pod}` };
  }
  if (ep && r < 0.32) return { world: { ...w, endpoints: replace({ ...ep, ips: rnd() < 0.5 ? [`10.244.3.${step + 100}`] : [`10.244.3.${step + 100}`, `fd00:244:3::${step + 100}`] }) }, what: `addresses of ${ep.pod}` };
  if (ep && r < 0.37) return { world: { ...w, endpoints: replace({ ...ep, ports: rnd() < 0.5 ? [] : [{ name: "http", containerPort: 8000 + step, protocol: "TCP" }] }) }, what: `ports of ${ep.pod}` };
  if (ep && r < 0.42) return { world: { ...w, endpoints: replace(undefined) }, what: `${ep.pod} removed` };
  if (ep && r < 0.46) return { world: { ...w, endpoints: replace({ ...ep, metadataKnown: ep.metadataKnown === false ? true : false }) }, what: `metadata of ${ep.pod} toggled` };
  if (ep && r < 0.5) return { world: { ...w, endpoints: replace({ ...ep, node: ep.node === LOCAL ? "n2" : LOCAL }) }, what: `${ep.pod} moved` };
  if (r < 0.58) {
    const ns = pick(rnd, ["a", "b", "c", "d"]);
    const pod = `q${step}`;
    const added: PodEndpoint = { namespace: ns, pod, node: rnd() < 0.5 ? LOCAL : "n2", hostIface: `slcq${step}x${Math.floor(rnd() * 1e6)}`, ips: [`10.244.4.${step + 10}`, `fd00:244:4::${step + 10}`], labels: rnd() < 0.7 ? { app: pick(rnd, ["web", "db", "api"]) } : {}, ports: rnd() < 0.4 ? [{ name: "http", containerPort: 80, protocol: "TCP" }] : [] };
    return { world: { ...w, endpoints: [...eps, added] }, what: `${pod} added in ${ns}` };
  }
  if (r < 0.66) {
    const name = pick(rnd, ["a", "b", "c", "d"]);
    const others = w.namespaces.filter((n) => n.name !== name);
    const labels: Record<string, string> = rnd() < 0.5 ? { team: pick(rnd, ["x", "y"]) } : { env: pick(rnd, ["p", "d"]) };
    return { world: { ...w, namespaces: rnd() < 0.15 ? others : [...others, { name, labels }] }, what: `namespace ${name}` };
  }
  if (r < 0.8) {
    // Policies: replace, add or delete one, taken from a fresh random scenario.
    const fresh = randomNetworkPolicyScenario(rnd).policies.map(networkPolicyToIr);
    const np = fresh[0];
    const k = Math.floor(rnd() * Math.max(1, w.policies.length));
    const kept = w.policies.filter((_, j) => j !== k);
    const q = rnd();
    if (q < 0.3 || !np) return { world: { ...w, policies: kept }, what: "policy deleted" };
    if (q < 0.6) return { world: { ...w, policies: [...kept, clusterPolicy(rnd, 10 + step)] }, what: "cluster policy replaced" };
    return { world: { ...w, policies: [...w.policies.filter((p) => p.id !== np.id), np] }, what: `policy ${np.id} written` };
  }
  if (r < 0.9) return { world: { ...w, nodes: randomNodes(rnd) }, what: "nodes" };
  return { world: { ...w, networkSets: randomNetworkSets(rnd) }, what: "network sets" };
}

const render = (w: World, family: Family, memo?: RenderMemo) =>
  renderPolicyIr({ family, nodeName: LOCAL, endpoints: w.endpoints, namespaces: w.namespaces, nodes: w.nodes, networkSets: w.networkSets, policies: w.policies, sctpSupported: w.sctp, memo });

describe("render memo", () => {
  test(`${SEQUENCES} random change sequences: the incremental render is the full render, both families`, () => {
    const rnd = mulberry32(20261203);
    let reused = 0;
    for (let seq = 0; seq < SEQUENCES; seq++) {
      let w = initialWorld(rnd);
      const memos = { 4: new RenderMemo(4, w.sctp), 6: new RenderMemo(6, w.sctp) };
      const history: string[] = [];
      for (let step = 0; step <= STEPS; step++) {
        if (step > 0) {
          const c = change(rnd, w, step);
          w = c.world;
          history.push(c.what);
        }
        for (const family of [4, 6] as const) {
          const inc = render(w, family, memos[family]);
          reused += memos[family].stats.setsReused + memos[family].stats.policiesReused;
          assert.deepEqual(inc, render(w, family), `sequence ${seq}, IPv${family}, after: ${history.join("; ")}`);
        }
      }
    }
    assert.ok(reused > SEQUENCES, `the memo was used (${reused} reuses)`);
  });

  test("a remote pod's label change recomputes only the sets it is or was in, and compiles no policy", () => {
    const ns: NamespaceInfo[] = [{ name: "a", labels: {} }];
    const pods: PodEndpoint[] = Array.from({ length: 40 }, (_, k) => ({ namespace: "a", pod: `p${k}`, node: k < 5 ? LOCAL : "n2", hostIface: `slcp${k}`, ips: [`10.244.1.${k + 1}`], labels: { app: `app${k % 10}` }, ports: [] }));
    const policies: PolicyIR[] = Array.from({ length: 10 }, (_, k) =>
      networkPolicyToIr({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: `np${k}`, namespace: "a" }, spec: { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { app: `app${k}` } } }] }], policyTypes: ["Ingress"] } }),
    );
    const w: World = { endpoints: pods, namespaces: ns, nodes: [], networkSets: [], policies, sctp: true };
    const memo = new RenderMemo(4, true);
    render(w, 4, memo);
    assert.equal(memo.stats.setsComputed, 10);
    assert.equal(memo.stats.policiesCompiled, 10);
    const moved = pods.map((p) => (p.pod === "p17" ? { ...p, labels: { app: "app3" } } : p)); // app7 -> app3
    const after = render({ ...w, endpoints: moved }, 4, memo);
    assert.deepEqual(after, render({ ...w, endpoints: moved }, 4));
    assert.equal(memo.stats.endpointsChanged, 2, "the old and the new version of one pod");
    assert.equal(memo.stats.setsComputed, 2, "the app7 set it left and the app3 set it joined");
    assert.equal(memo.stats.setsReused, 8);
    assert.equal(memo.stats.policiesCompiled, 0);

    // A label no selector reads: the pod stays in (and out of) every set, none is recomputed.
    const tagged = moved.map((p) => (p.pod === "p17" ? { ...p, labels: { ...p.labels, track: "canary" } } : p));
    assert.deepEqual(render({ ...w, endpoints: tagged }, 4, memo), render({ ...w, endpoints: tagged }, 4));
    assert.equal(memo.stats.endpointsChanged, 2);
    assert.equal(memo.stats.setsComputed, 0, "no set's members moved");
    assert.equal(memo.stats.setsReused, 10);
  });

  test("a memo refuses a render of another family or SCTP capability", () => {
    const w: World = { endpoints: [], namespaces: [], nodes: [], networkSets: [], policies: [], sctp: true };
    assert.throws(() => render(w, 6, new RenderMemo(4, true)), /render memo of IPv4/);
    assert.throws(() => render({ ...w, sctp: false }, 4, new RenderMemo(4, true)), /sctp true/);
  });
});
