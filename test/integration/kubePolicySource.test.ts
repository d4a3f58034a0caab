/**
 * KubePolicySource against the fake API server with the real client library: objects flow
 * into the same PolicySnapshot as in etcd mode (the same objects in real etcd and in the
 * API render the identical dataplane, and the golden file's), invalid objects fail closed,
 * and outages and 410 Gone leave the snapshot in place until a relist catches up.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { z } from "zod";
import type { KubeConfig } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { objectMeta } from "../../src/config/k8sSchemas.js";
import { KINDS, type KubeObject, defineKind } from "../../src/config/resourceKinds.js";
import { EtcdResourceStore } from "../../src/datastore/etcdResources.js";
import { KubePolicySource, type LocalEndpointRecords } from "../../src/datastore/kubePolicySource.js";
import { COPIES_IGNORED, type PolicySnapshot, PolicySource } from "../../src/datastore/policySource.js";
import { resourceKey, workloadEndpointKey } from "../../src/datastore/resourceKeys.js";
import { type WorkloadEndpointRecord, hostIfaceName } from "../../src/model/endpoint.js";
import type { PolicyFeed } from "../../src/agent/policyEngine.js";
import { buildPolicyModel } from "../../src/policy/model.js";
import { renderPolicyModel } from "../../src/render/policy.js";
import { formatPolicyRender } from "../../src/render/policyText.js";
import { packageRoot } from "../../src/sandbox/paths.js";
import { type TestEtcd, startTestEtcd } from "../helpers/etcd.js";
import { FakeKubeApi, type FakeObject } from "../helpers/fakeKubeApi.js";
import { type PodSpec, kubeConfigFor, namespaceObject, networkPolicyObject, podObject, until } from "../helpers/kube.js";
import { captureLog } from "../helpers/log.js";

const NODE = "n1";

class Records extends EventEmitter implements LocalEndpointRecords {
  list: WorkloadEndpointRecord[] = [];
  records(): WorkloadEndpointRecord[] {
    return this.list;
  }
  set(list: WorkloadEndpointRecord[]): void {
    this.list = list;
    this.emit("changed");
  }
}

const record = (namespace: string, pod: string, ips: string[], node = NODE): WorkloadEndpointRecord => ({ node, namespace, pod, containerId: `c-${pod}`, ifName: "eth0", hostIface: hostIfaceName(namespace, pod), ips });

// The golden scenario two-policies-union (test/unit/policyRender.test.ts), as cluster objects.
const tcp = (name: string, containerPort: number) => ({ name, containerPort });
const PODS: [string, string, PodSpec][] = [
  ["prod", "web", { node: NODE, ips: ["10.244.1.2", "fd00:244:1::2"], labels: { app: "web" }, ports: [tcp("http", 8080)] }],
  ["prod", "db", { node: NODE, ips: ["10.244.1.3", "fd00:244:1::3"], labels: { app: "db" }, ports: [tcp("pg", 5432)] }],
  ["prod", "api", { node: "n2", ips: ["10.244.2.4", "fd00:244:2::4"], labels: { app: "api" }, ports: [tcp("http", 8000)] }],
  ["dev", "db", { node: "n2", ips: ["10.244.2.5", "fd00:244:2::5"], labels: { app: "db" }, ports: [tcp("pg", 5433)] }],
  ["ops", "monitor", { node: "n2", ips: ["10.244.2.6"], labels: { app: "monitor" } }],
];
const NAMESPACES = [namespaceObject("prod", { team: "shop", env: "prod" }), namespaceObject("dev", { team: "shop", env: "dev" }), namespaceObject("ops", { team: "ops" })];
const webSel = { matchLabels: { app: "web" } };
const dbSel = { matchLabels: { app: "db" } };
const GOLDEN_POLICIES = [
  networkPolicyObject("prod", "web-from-ops", { podSelector: webSel, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "ops" } } }] }] }),
  networkPolicyObject("prod", "all-from-api", { podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { app: "api" } } }] }] }),
];
// More policies and odd endpoints for the etcd/Kubernetes equivalence.
const MORE_POLICIES = [
  networkPolicyObject("prod", "web-from-block", { podSelector: webSel, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.244.2.0/24"] } }, { ipBlock: { cidr: "fd00:244::/32", except: ["fd00:244:2::/64"] } }] }] }),
  networkPolicyObject("prod", "db-egress", { podSelector: dbSel, policyTypes: ["Egress"], egress: [{ to: [{ podSelector: {} }, { ipBlock: { cidr: "10.244.0.0/16" } }], ports: [{ port: "http" }] }, { ports: [{ port: "pg" }] }] }),
  networkPolicyObject("dev", "db-range", { podSelector: dbSel, ingress: [{ ports: [{ port: 8000, endPort: 8080 }, { protocol: "UDP", port: 53 }] }, { from: [{ namespaceSelector: { matchLabels: { team: "ops" } } }], ports: [{ protocol: "UDP" }] }] }),
  networkPolicyObject("ops", "no-egress", { podSelector: {}, policyTypes: ["Egress"] }),
  networkPolicyObject("ghost", "deny", { podSelector: {} }),
];
const MORE_PODS: [string, string, PodSpec][] = [
  ["ghost", "lost", { node: NODE, ips: ["10.244.1.7"], labels: { app: "web" } }], // no Namespace object
  ["ops", "host", { node: NODE, ips: ["192.168.50.11"], hostNetwork: true }], // not an endpoint
  ["blue", "b1", { node: NODE, ips: ["10.244.1.30", "fd00:244:1::30"], labels: { app: "web" }, ports: [tcp("metrics", 9090)] }],
  ["red", "r1", { node: "n2", ips: ["10.244.2.30"], labels: { app: "db" } }],
  ["monitoring", "prom", { node: "n2", ips: ["10.244.2.31"], labels: { app: "prom" } }],
];
/** Every policy tier and set kind (p-kinds' fixture: CNPs, a GNP, network sets, a Node) and the tenants they name. */
function tieredObjects(): FakeObject[] {
  const docs = parseAllDocuments(readFileSync(join(packageRoot(), "test", "fixtures", "policy-kinds.yaml"), "utf8")).map((d) => d.toJS() as FakeObject);
  return [...docs.filter((d) => d !== null), namespaceObject("blue", { tenant: "blue" }), namespaceObject("red", { tenant: "red" }), namespaceObject("monitoring")];
}
/** A NetworkPolicy neither store can read (sluicectl apply refuses it; a direct write gets it in): a fail-closed stand-in in both modes. */
const UNREADABLE = networkPolicyObject("prod", "typo", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] });

/** An object without what each store sets on write (uid, resourceVersion, creationTimestamp). */
function withoutServerFields<T extends KubeObject>(o: T): T {
  const metadata = { ...o.metadata };
  delete metadata.uid;
  delete metadata.resourceVersion;
  delete metadata.creationTimestamp;
  return { ...o, metadata };
}

function golden(name: string): string {
  const text = readFileSync(join(packageRoot(), "test", "golden", "policy", `${name}.txt`), "utf8");
  return text
    .split("\n")
    .filter((l) => !l.startsWith("# "))
    .join("\n");
}

describe("KubePolicySource", () => {
  let api: FakeKubeApi;
  let kc: KubeConfig;
  const sources: KubePolicySource[] = [];

  before(async () => {
    api = await FakeKubeApi.start({ kinds: [...KINDS, widgetKind] });
    kc = await kubeConfigFor(api);
  });
  after(async () => {
    for (const s of sources) await s.stop();
    await api.stop();
  });

  function reset(objects: FakeObject[]): void {
    for (const k of KINDS) for (const o of api.list(k.group ? `${k.group}/${k.version}` : k.version, k.kind)) api.remove({ apiVersion: o.apiVersion, kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name });
    for (const o of objects) api.put(o);
  }

  async function source(o: { records?: LocalEndpointRecords; kinds?: typeof KINDS } = {}): Promise<{ src: KubePolicySource; log: ReturnType<typeof captureLog> }> {
    const log = captureLog();
    const src: KubePolicySource & PolicyFeed = new KubePolicySource({ kc, log: log.log, nodeName: NODE, initialBackoffMs: 20, maxBackoffMs: 100, ...(o.records ? { localRecords: o.records } : {}), ...(o.kinds ? { kinds: o.kinds } : {}) });
    sources.push(src);
    await src.start();
    return { src, log };
  }

  const endpointText = (s: PolicySnapshot): string[] => s.endpoints.map((e) => `${e.namespace}/${e.pod}@${e.node} ${e.ips.join(",")}${e.metadataKnown === false ? " unknown" : ""}`);

  test("the same objects in etcd and in the API give the same snapshot and render the identical dataplane (and the golden file's)", async () => {
    let etcd: TestEtcd | undefined;
    try {
      etcd = await startTestEtcd();
      const all = (pods: [string, string, PodSpec][], policies: FakeObject[]): FakeObject[] => [...NAMESPACES, ...pods.map(([ns, n, p]) => podObject(ns, n, p)), ...policies];
      for (const [i, set] of [
        { name: "golden", pods: PODS, policies: GOLDEN_POLICIES, unreadable: [] },
        { name: "more", pods: [...PODS, ...MORE_PODS], policies: [...GOLDEN_POLICIES, ...MORE_POLICIES, ...tieredObjects()], unreadable: [UNREADABLE] },
      ].entries()) {
        const objects = all(set.pods, set.policies);
        // etcd mode: sluicectl apply writes the objects, the CNI plugin the records of wired pods.
        const prefix = `/sluice-test-${i}`;
        await new EtcdResourceStore(etcd.client, { prefix }).applyAll(objects as unknown as KubeObject[]);
        for (const u of set.unreadable) await etcd.client.put(resourceKey("networkpolicies", u.metadata.namespace, u.metadata.name, prefix)).value(JSON.stringify(u));
        const records = set.pods.filter(([, , p]) => !p.hostNetwork).map(([ns, n, p]) => record(ns, n, p.ips ?? [], p.node));
        const orphan = record("prod", "orphan", ["10.244.1.9"]); // wired, Pod object gone
        for (const r of [...records, orphan]) await etcd.client.put(workloadEndpointKey(r.node, r.namespace, r.pod, r.ifName, prefix)).value(JSON.stringify(r));
        const etcdSource: PolicySource = new PolicySource({ client: etcd.client, log: captureLog().log, prefix });
        await etcdSource.start();
        const fromEtcd: PolicySnapshot = etcdSource.snapshot();
        await etcdSource.stop();

        // Kubernetes mode: the API holds the same objects; the CNI plugin's record of the orphan is local.
        reset([...objects, ...set.unreadable]);
        const local = new Records();
        local.set([orphan]);
        const { src } = await source({ records: local });
        const fromKube = src.snapshot();
        await src.stop();

        assert.deepEqual(fromKube.endpoints, fromEtcd.endpoints, `${set.name}: endpoints`);
        assert.deepEqual(fromKube.namespaces, fromEtcd.namespaces, `${set.name}: namespaces`);
        assert.deepEqual(fromKube.networkPolicies.map(withoutServerFields), fromEtcd.networkPolicies.map(withoutServerFields), `${set.name}: policies`);
        for (const k of KINDS) assert.deepEqual(fromKube.objects[k.kind]?.map(withoutServerFields), fromEtcd.objects[k.kind]?.map(withoutServerFields), `${set.name}: ${k.kind} objects`);
        const refusedOf = (x: PolicySnapshot): string[] => (x.refused ?? []).map((r) => `${r.kind} ${r.namespace}/${r.name}`);
        assert.deepEqual(refusedOf(fromKube), refusedOf(fromEtcd), `${set.name}: refused`);
        assert.equal(refusedOf(fromKube).length, set.unreadable.length);
        if (set.name === "more") {
          const tiers = new Set(buildPolicyModel(fromKube).policies.map((p) => p.tier));
          assert.ok(tiers.has("admin") && tiers.has("baseline"), `every tier is compared (${[...tiers].join(", ")})`);
        }
        let renders = 0;
        for (const nodeName of [NODE, "n2"]) {
          for (const family of [4, 6] as const) {
            const a = renderPolicyModel({ family, nodeName, model: buildPolicyModel(fromEtcd), sctpSupported: false });
            const b = renderPolicyModel({ family, nodeName, model: buildPolicyModel(fromKube), sctpSupported: false });
            assert.deepEqual(b, a, `${set.name}: node ${nodeName}, family ${family}`);
            renders++;
          }
        }
        assert.equal(renders, 4);
        if (set.name === "golden") {
          const model = buildPolicyModel({ ...fromKube, endpoints: fromKube.endpoints.filter((e) => e.pod !== "orphan") });
          assert.equal(formatPolicyRender(renderPolicyModel({ family: 4, nodeName: NODE, model, sctpSupported: false })), golden("two-policies-union"));
        }
      }
    } finally {
      await etcd?.stop();
    }
  });

  test("pods, namespaces and policies flow in as they change; hostNetwork, ended and address-less pods are not endpoints", async () => {
    reset([namespaceObject("a", { team: "x" }), podObject("a", "p1", { node: "n2", ips: ["10.244.2.10"], labels: { app: "one" }, ports: [tcp("http", 80)] }), podObject("a", "hostnet", { node: "n2", ips: ["192.168.50.12"], hostNetwork: true }), podObject("a", "done", { node: "n2", ips: ["10.244.2.11"], phase: "Succeeded" }), podObject("a", "pending", { node: "n2" })]);
    const { src } = await source();
    assert.equal(src.synced, true);
    await until("live", () => src.live);
    assert.deepEqual(endpointText(src.snapshot()), ["a/p1@n2 10.244.2.10"]);
    assert.deepEqual(src.snapshot().endpoints[0]?.ports, [{ name: "http", containerPort: 80, protocol: "TCP" }]);
    assert.deepEqual(src.snapshot().namespaces, [{ name: "a", labels: { "kubernetes.io/metadata.name": "a", team: "x" } }]);
    let changes = 0;
    src.on("changed", () => changes++);
    api.put(podObject("a", "pending", { node: "n2", ips: ["10.244.2.12"], labels: { app: "two" } }));
    api.put(networkPolicyObject("a", "np", { podSelector: {} }));
    api.put(podObject("b", "p", { node: "n2", ips: ["10.244.2.13"] }));
    await until("three changes", () => src.snapshot().networkPolicies.length === 1 && src.snapshot().endpoints.length === 3).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(endpointText(src.snapshot()))} ${src.snapshot().networkPolicies.length}`);
    });
    assert.deepEqual(endpointText(src.snapshot()), ["a/p1@n2 10.244.2.10", "a/pending@n2 10.244.2.12", "b/p@n2 10.244.2.13 unknown"]);
    assert.ok(changes >= 3);
    api.remove({ apiVersion: "v1", kind: "Pod", namespace: "a", name: "p1" });
    api.put(namespaceObject("b"));
    await until("p1 gone, namespace b known", () => endpointText(src.snapshot()).join() === "a/pending@n2 10.244.2.12,b/p@n2 10.244.2.13");
  });

  test("local CNI records give this node's pods their addresses before the kubelet does, and win over the status", async () => {
    reset([namespaceObject("a"), podObject("a", "new", { node: NODE, labels: { app: "new" } }), podObject("a", "old", { node: NODE, ips: ["10.244.1.20"] }), podObject("a", "far", { node: "n2", ips: ["10.244.2.20"] })]);
    const local = new Records();
    const { src } = await source({ records: local });
    assert.deepEqual(endpointText(src.snapshot()), ["a/far@n2 10.244.2.20", "a/old@n1 10.244.1.20"]);
    local.set([record("a", "new", ["10.244.1.21"]), record("a", "old", ["10.244.1.22"])]);
    assert.deepEqual(endpointText(src.snapshot()), ["a/far@n2 10.244.2.20", "a/new@n1 10.244.1.21", "a/old@n1 10.244.1.22"]);
    assert.deepEqual(src.snapshot().endpoints.find((e) => e.pod === "new")?.labels, { app: "new" });
    assert.equal(src.snapshot().workloadEndpoints.length, 2);
  });

  test("an invalid object is refused when it has no good version, and keeps its last good version otherwise", async () => {
    const bad = (name: string) => networkPolicyObject("a", name, { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "not-a-cidr" } }] }] });
    reset([namespaceObject("a"), bad("broken")]);
    const { src } = await source();
    assert.deepEqual(src.snapshot().refused?.map((r) => [r.kind, r.namespace, r.name]), [["NetworkPolicy", "a", "broken"]]);
    assert.match(src.snapshot().refused?.[0]?.reason ?? "", /spec\.ingress\[0\]\.from\[0\]\.ipBlock\.cidr/);
    assert.equal(src.snapshot().networkPolicies.length, 0);
    // Fixed: accepted. Broken again: the fixed version stays.
    api.put(networkPolicyObject("a", "broken", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" } }] }] }));
    await until("fixed", () => src.snapshot().networkPolicies.length === 1);
    assert.deepEqual(src.snapshot().refused, []);
    api.put(bad("broken"));
    await until("refused again", () => src.invalidValues().length === 1);
    assert.deepEqual(src.invalidValues().map((v) => [v.key, v.keptLastGood]), [["NetworkPolicy a/broken", true]]);
    assert.equal(src.snapshot().networkPolicies[0]?.spec.ingress?.[0]?.from?.[0]?.ipBlock?.cidr, "10.0.0.0/8");
    assert.deepEqual(src.snapshot().refused, []);
  });

  test("a large object is validated in the worker thread (without its exact copies), in order with the events around it; a large invalid one is refused", async () => {
    // 20,000 copies of one peer: some 700 KiB of JSON, well over what is validated inline.
    const big = (name: string, peer: object) => networkPolicyObject("a", name, { podSelector: {}, ingress: [{ from: Array.from({ length: 20_000 }, () => peer), ports: [{ port: 80 }] }] });
    reset([namespaceObject("a"), big("big", { podSelector: { matchLabels: { app: "x" } } })]);
    const { src, log } = await source();
    const listed = src.snapshot().networkPolicies.find((n) => n.metadata.name === "big");
    assert.deepEqual(listed?.spec.ingress?.[0]?.from, [{ podSelector: { matchLabels: { app: "x" } } }], "validated, its 19,999 copies of the peer dropped");
    assert.deepEqual(listed?.spec.ingress?.[0]?.ports, [{ protocol: "TCP", port: 80 }], "defaults filled, as validateObject does");
    assert.ok(log.records.some((r) => r["msg"] === COPIES_IGNORED && r["copies"] === 19_999 && r["key"] === "a/big"));
    // A large invalid version, then a small change after it: both apply, in that order.
    api.put(big("big", { ipBlock: { cidr: "not-a-cidr" } }));
    api.put(networkPolicyObject("a", "after", { podSelector: {} }));
    await until("the later small policy", () => src.snapshot().networkPolicies.some((n) => n.metadata.name === "after"));
    assert.deepEqual(src.invalidValues().map((v) => [v.key, v.keptLastGood]), [["NetworkPolicy a/big", true]], "refused by then: events apply in order");
    assert.match(src.invalidValues()[0]?.reason ?? "", /^spec\.ingress\[0\]\.from\[0\]\.ipBlock\.cidr: must be a CIDR/);
    assert.equal(src.snapshot().networkPolicies.find((n) => n.metadata.name === "big")?.spec.ingress?.[0]?.from?.[0]?.podSelector?.matchLabels?.["app"], "x", "the last good version stays");
  });

  test("an API outage keeps the snapshot and synced; the relist after it (history compacted meanwhile) brings the changes", async () => {
    reset([namespaceObject("a"), podObject("a", "p1", { node: "n2", ips: ["10.244.2.30"] })]);
    const { src } = await source();
    await until("live", () => src.live);
    const lists = src.listCount;
    await api.outage();
    await until("not live", () => !src.live);
    assert.equal(src.synced, true);
    assert.deepEqual(endpointText(src.snapshot()), ["a/p1@n2 10.244.2.30"]);
    api.remove({ apiVersion: "v1", kind: "Pod", namespace: "a", name: "p1" });
    api.put(podObject("a", "p2", { node: "n2", ips: ["10.244.2.31"] }));
    api.compact();
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(endpointText(src.snapshot()), ["a/p1@n2 10.244.2.30"], "the last snapshot stays through the outage");
    await api.recover();
    await until("caught up", () => endpointText(src.snapshot()).join() === "a/p2@n2 10.244.2.31");
    await until("live again", () => src.live);
    assert.ok(src.listCount > lists, "the 410 on resuming made the informers relist");
  });

  test("410 Gone during a watch: the informer relists and gets the changes made meanwhile", async () => {
    reset([namespaceObject("a"), podObject("a", "p1", { node: "n2", ips: ["10.244.2.40"] })]);
    const { src } = await source();
    await until("live", () => src.live);
    const podLists = api.requests({ method: "GET", path: "/api/v1/pods" }).filter((r) => !r.watch).length;
    api.expireWatches();
    api.put(podObject("a", "p2", { node: "n2", ips: ["10.244.2.41"] }));
    await until("p2 after the relist", () => endpointText(src.snapshot()).includes("a/p2@n2 10.244.2.41"));
    assert.ok(api.requests({ method: "GET", path: "/api/v1/pods" }).filter((r) => !r.watch).length > podLists, "pods were listed again");
    assert.equal(src.synced, true);
  });

  test("every registry kind is watched generically; one the server does not serve (by discovery) counts as empty", async () => {
    reset([namespaceObject("a")]);
    api.put({ apiVersion: "test.sluice.dev/v1", kind: "Widget", metadata: { name: "w1", namespace: "a" }, spec: { size: 3 } });
    api.put({ apiVersion: "test.sluice.dev/v1", kind: "Widget", metadata: { name: "w2", namespace: "a" }, spec: { size: "big" } });
    const { src, log } = await source({ kinds: [...KINDS, widgetKind, gadgetKind] });
    assert.deepEqual(
      src.snapshot().objects["Widget"]?.map((o) => o.metadata.name),
      ["w1"],
    );
    assert.deepEqual(src.snapshot().refused?.map((r) => `${r.kind} ${r.namespace}/${r.name}`), ["Widget a/w2"]);
    assert.deepEqual(src.snapshot().objects["Gadget"], []);
    assert.ok(log.messages().some((m) => m.includes("does not serve this resource")));
    api.remove({ apiVersion: "test.sluice.dev/v1", kind: "Widget", namespace: "a", name: "w1" });
    await until("w1 gone", () => src.snapshot().objects["Widget"]?.length === 0);
  });

  const CNP_VERSION = "policy.networking.k8s.io/v1alpha2";
  const denyCnp = (name: string): FakeObject => ({ apiVersion: CNP_VERSION, kind: "ClusterNetworkPolicy", metadata: { name }, spec: { tier: "Admin", priority: 5, subject: { namespaces: {} }, ingress: [{ action: "Deny", from: [{ namespaces: {} }] }] } });
  const cnpNames = (src: KubePolicySource): string[] => (src.snapshot().objects["ClusterNetworkPolicy"] ?? []).map((o) => o.metadata.name);
  const failedCnpLists = (): number => api.requests({ method: "GET", path: "/clusternetworkpolicies" }).filter((r) => !r.watch && r.status === 404).length;

  test("a 404 on the relist (410 first) is not an empty list: the Deny stays while discovery serves the kind", async () => {
    reset([namespaceObject("a"), denyCnp("deny-all")]);
    const { src, log } = await source();
    await until("live", () => src.live);
    assert.deepEqual(cnpNames(src), ["deny-all"]);
    const before = failedCnpLists();
    api.failLists(CNP_VERSION, "ClusterNetworkPolicy", 404);
    try {
      api.expireWatches();
      const refused = (): number => log.messages().filter((m) => m.includes("list answered 404 but the resource is not known to be absent; keeping the last known state")).length;
      await until("two relists answered 404", () => failedCnpLists() >= before + 2 && refused() >= 2);
      assert.deepEqual(cnpNames(src), ["deny-all"], "the last snapshot stays");
      assert.equal(src.synced, true);
      assert.ok(!log.messages().some((m) => m.includes("does not serve this resource")));
    } finally {
      api.failLists(CNP_VERSION, "ClusterNetworkPolicy", 0);
    }
    api.put(denyCnp("deny-more"));
    await until("relisted once the lists work again", () => cnpNames(src).join() === "deny-all,deny-more");
  });

  test("a 404 at start-up while discovery serves the kind: not synced until the kind lists", async () => {
    reset([namespaceObject("a"), denyCnp("deny-all")]);
    const before = failedCnpLists();
    api.failLists(CNP_VERSION, "ClusterNetworkPolicy", 404);
    const log = captureLog();
    const src = new KubePolicySource({ kc, log: log.log, nodeName: NODE, initialBackoffMs: 20, maxBackoffMs: 100 });
    sources.push(src);
    let started = false;
    const start = src.start().then(() => (started = true));
    try {
      await until("lists refused", () => failedCnpLists() >= before + 3);
      assert.equal(started, false);
      assert.equal(src.synced, false, "a kind in an unknown state holds the source back (the agent leaves the filter table as it is)");
    } finally {
      api.failLists(CNP_VERSION, "ClusterNetworkPolicy", 0);
    }
    await start;
    assert.deepEqual(cnpNames(src), ["deny-all"]);
  });

  test("a CRD that is deleted (discovery drops it) empties its kind; installed again, it is picked up", async () => {
    reset([namespaceObject("a")]);
    api.install("test.sluice.dev/v1", "Widget");
    api.put({ apiVersion: "test.sluice.dev/v1", kind: "Widget", metadata: { name: "w1", namespace: "a" }, spec: { size: 3 } });
    const { src, log } = await source({ kinds: [...KINDS, widgetKind] });
    await until("live", () => src.live);
    const widgets = (): string[] => (src.snapshot().objects["Widget"] ?? []).map((o) => o.metadata.name);
    assert.deepEqual(widgets(), ["w1"]);
    api.uninstall("test.sluice.dev/v1", "Widget");
    try {
      await until("empty once discovery says the kind is gone", () => widgets().length === 0);
      assert.ok(log.messages().some((m) => m.includes("does not serve this resource")));
    } finally {
      api.install("test.sluice.dev/v1", "Widget");
    }
    api.put({ apiVersion: "test.sluice.dev/v1", kind: "Widget", metadata: { name: "w2", namespace: "a" }, spec: { size: 4 } });
    await until("picked up again", () => widgets().join() === "w2", 15_000);
  });

  test("a listener that throws neither stops the watch nor the process", async () => {
    reset([namespaceObject("a")]);
    const { src, log } = await source();
    await until("live", () => src.live);
    src.on("changed", () => {
      throw new Error("listener bug");
    });
    api.put(podObject("a", "p", { node: "n2", ips: ["10.244.2.50"] }));
    await until("logged", () => log.messages().includes("a policy source listener failed"));
    api.put(podObject("a", "q", { node: "n2", ips: ["10.244.2.51"] }));
    await until("still watching", () => src.snapshot().endpoints.length === 2);
  });
});

const widgetKind = defineKind({
  group: "test.sluice.dev",
  version: "v1",
  kind: "Widget",
  plural: "widgets",
  singular: "widget",
  namespaced: true,
  shortNames: [],
  schema: z.object({ apiVersion: z.literal("test.sluice.dev/v1"), kind: z.literal("Widget"), metadata: objectMeta, spec: z.object({ size: z.number() }) }),
});
const gadgetKind = defineKind({
  group: "test.sluice.dev",
  version: "v1",
  kind: "Gadget",
  plural: "gadgets",
  singular: "gadget",
  namespaced: false,
  shortNames: [],
  schema: z.object({ apiVersion: z.literal("test.sluice.dev/v1"), kind: z.literal("Gadget"), metadata: objectMeta }),
});
