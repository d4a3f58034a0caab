import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import type { NetworkPolicyObject } from "../../src/config/k8sSchemas.js";
import { type KubeObject, namespaceKind, networkPolicyKind, podKind } from "../../src/config/resourceKinds.js";
import { connectEtcd } from "../../src/datastore/etcdClient.js";
import { EtcdResourceStore, ResourceValidationError, TooManyOpsError } from "../../src/datastore/etcdResources.js";
import { COPIES_IGNORED, PolicySource, type PolicySourceChange } from "../../src/datastore/policySource.js";
import { namespaceKey, resourceKey, workloadEndpointKey } from "../../src/datastore/resourceKeys.js";
import { type WorkloadEndpointRecord, hostIfaceName } from "../../src/model/endpoint.js";
import { etcdConnection, startEtcd } from "../../src/sandbox/etcdServer.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { captureLog } from "../helpers/log.js";
import { buildPolicyModel } from "../../src/policy/model.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let counter = 0;
const uniquePrefix = () => `/t-${process.pid}-${++counter}/sluice/v1`;

async function waitFor(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const ns = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });
const np = (namespace: string, name: string, podSelector: object = {}, extra: object = {}): KubeObject => ({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec: { podSelector, ...extra } } as KubeObject);
const pod = (namespace: string, name: string, labels: Record<string, string>, ports: object[] = []): KubeObject => ({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace, labels }, spec: { nodeName: "node-1", containers: [{ name: "c", ports }] } } as KubeObject);
const wep = (namespace: string, p: string, node: string, ip: string): WorkloadEndpointRecord => ({ node, namespace, pod: p, containerId: `cid-${p}`, ifName: "eth0", hostIface: hostIfaceName(namespace, p), ips: [ip] });
const putWep = (client: Etcd3, prefix: string, r: WorkloadEndpointRecord) => client.put(workloadEndpointKey(r.node, r.namespace, r.pod, r.ifName, prefix)).value(JSON.stringify(r));

describe("EtcdResourceStore", () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    await etcd.stop();
  });

  test("put, get, list and delete each kind; resourceVersion is the etcd mod revision and is not stored", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    const created = await store.put(ns("prod", { team: "a" }));
    assert.equal(created.outcome, "created");
    await store.put(pod("prod", "web-1", { app: "web" }));
    await store.put(np("prod", "deny-all"));

    const raw = await etcd.client.get(namespaceKey("prod", prefix)).exec();
    const stored = JSON.parse(raw.kvs[0]?.value.toString() ?? "{}") as KubeObject;
    assert.equal(stored.metadata.resourceVersion, undefined, "resourceVersion is not stored");
    assert.deepEqual(stored.metadata.labels, { team: "a", "kubernetes.io/metadata.name": "prod" }, "a Namespace always carries its name label");
    assert.match(stored.metadata.creationTimestamp ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const got = await store.get(namespaceKind, undefined, "prod");
    assert.equal(got?.metadata.resourceVersion, raw.kvs[0]?.mod_revision);
    const gotNp = await store.get(networkPolicyKind, "prod", "deny-all");
    assert.deepEqual(gotNp?.spec, { podSelector: {} });
    assert.equal(gotNp?.metadata.namespace, "prod");
    assert.equal((await store.get(podKind, "prod", "web-1"))?.metadata.labels?.["app"], "web");
    assert.equal(await store.get(networkPolicyKind, "other", "deny-all"), undefined);

    await store.put(np("dev", "allow"));
    assert.deepEqual((await store.list(networkPolicyKind)).items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`), ["dev/allow", "prod/deny-all"]);
    assert.deepEqual((await store.list(networkPolicyKind, "prod")).items.map((o) => o.metadata.name), ["deny-all"]);

    assert.equal(await store.delete({ kind: networkPolicyKind, namespace: "prod", name: "deny-all" }), true);
    assert.equal(await store.delete({ kind: networkPolicyKind, namespace: "prod", name: "deny-all" }), false);
    assert.equal(await store.get(networkPolicyKind, "prod", "deny-all"), undefined);
  });

  test("re-applying the same object is unchanged; a changed one is configured and keeps uid and creationTimestamp", async () => {
    const store = new EtcdResourceStore(etcd.client, { prefix: uniquePrefix() });
    const first = await store.put(np("a", "p", { matchLabels: { app: "web" } }));
    const again = await store.put(np("a", "p", { matchLabels: { app: "web" } }));
    assert.equal(again.outcome, "unchanged");
    assert.equal(again.object.metadata.resourceVersion, first.object.metadata.resourceVersion);
    await sleep(1100);
    const changed = await store.put(np("a", "p", { matchLabels: { app: "db" } }));
    assert.equal(changed.outcome, "configured");
    assert.equal(changed.object.metadata.uid, first.object.metadata.uid);
    assert.equal(changed.object.metadata.creationTimestamp, first.object.metadata.creationTimestamp);
    assert.notEqual(changed.object.metadata.resourceVersion, first.object.metadata.resourceVersion);
  });

  test("applyAll writes a whole batch in one transaction", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    await store.put(np("x", "existing"));
    const before = await etcd.client.get("/nothing").exec();
    const results = await store.applyAll([ns("x"), np("x", "a"), np("x", "b"), pod("x", "p", { a: "b" }), np("x", "existing", { matchLabels: { k: "v" } })]);
    const afterRev = (await etcd.client.get("/nothing").exec()).header.revision;
    assert.deepEqual(results.map((r) => r.outcome), ["created", "created", "created", "created", "configured"]);
    assert.equal(BigInt(afterRev), BigInt(before.header.revision) + 1n, "one revision: one transaction");
    const kvs = (await etcd.client.getAll().prefix(`${prefix}/`).exec()).kvs;
    assert.equal(kvs.length, 5);
    assert.ok(kvs.every((kv) => kv.mod_revision === afterRev), "every key written at the same revision");
    assert.ok(results.every((r) => r.object.metadata.resourceVersion === afterRev));
  });

  test("a batch with one invalid object writes nothing and names the object and field", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    const bad = np("x", "deny-all", {}, { ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] });
    await assert.rejects(store.applyAll([np("x", "good"), bad, { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } }]), (err: unknown) => {
      assert.ok(err instanceof ResourceValidationError);
      assert.match(err.message, /object 2 \(NetworkPolicy x\/deny-all\): spec\.ingress\[0\]\.from\[0\]\.ipBlock\.cidr: must be a CIDR such as 10\.0\.0\.0\/8/);
      assert.match(err.message, /object 3 \(Widget w\): kind: no kind "Widget" in version "example.com\/v1" is known/);
      return true;
    });
    assert.equal((await etcd.client.getAll().prefix(`${prefix}/`).keys()).length, 0);
  });

  test("a batch larger than one transaction may carry is refused whole", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix, maxTxnOps: 2 });
    await assert.rejects(store.applyAll([np("x", "a"), np("x", "b"), np("x", "c")]), TooManyOpsError);
    assert.equal((await etcd.client.getAll().prefix(`${prefix}/`).keys()).length, 0);
    // Unchanged objects cost no write, so re-applying a bigger file that changed little works.
    await store.applyAll([np("x", "a"), np("x", "b")]);
    const r = await store.applyAll([np("x", "a"), np("x", "b"), np("x", "c")]).catch((e: Error) => e);
    assert.ok(!(r instanceof Error), String(r));
  });

  test("an object over the API server's 1.5 MiB is refused whole, naming its size", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    const huge = np("x", "huge", {}, { ingress: [{ from: Array.from({ length: 60_000 }, (_, i) => ({ ipBlock: { cidr: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}/32` } })) }] });
    await assert.rejects(store.applyAll([huge]), /object 1 \(NetworkPolicy x\/huge\): \(root\): is \d+ bytes of JSON, over the 1572864 bytes \(1\.5 MiB\) one Kubernetes object may take/);
    assert.equal((await etcd.client.getAll().prefix(`${prefix}/`).keys()).length, 0);
  });

  test("dry run reports outcomes and writes nothing", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    await store.put(np("x", "a"));
    const r = await store.applyAll([np("x", "a"), np("x", "b")], { dryRun: true });
    assert.deepEqual(r.map((x) => x.outcome), ["unchanged", "created"]);
    assert.equal((await etcd.client.getAll().prefix(`${prefix}/`).keys()).length, 1);
  });

  test("deleteAll deletes in one transaction and says which existed", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    await store.applyAll([np("x", "a"), np("x", "b"), ns("x")]);
    const before = (await etcd.client.get("/nothing").exec()).header.revision;
    const existed = await store.deleteAll([
      { kind: networkPolicyKind, namespace: "x", name: "a" },
      { kind: networkPolicyKind, namespace: "x", name: "missing" },
      { kind: namespaceKind, name: "x" },
    ]);
    assert.deepEqual(existed, [true, false, true]);
    assert.equal((await etcd.client.get("/nothing").exec()).header.revision, String(BigInt(before) + 1n));
    assert.deepEqual(await etcd.client.getAll().prefix(`${prefix}/`).keys(), [resourceKey("networkpolicies", "x", "b", prefix)]);
  });

  test("invalid stored values: list skips and reports them, get refuses them", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    await store.put(np("x", "good"));
    await etcd.client.put(resourceKey("networkpolicies", "x", "notjson", prefix)).value("{");
    await etcd.client.put(resourceKey("networkpolicies", "x", "wrongname", prefix)).value(JSON.stringify(np("x", "other")));
    await etcd.client.put(resourceKey("networkpolicies", "x", "badspec", prefix)).value(JSON.stringify(np("x", "badspec", { matchLabels: { "bad key": "v" } })));
    const l = await store.list(networkPolicyKind, "x");
    assert.deepEqual(l.items.map((i) => i.metadata.name), ["good"]);
    assert.deepEqual(
      l.invalid.map((i) => [i.key.split("/").pop(), i.reason.split(":")[0]]),
      [["badspec", "spec.podSelector.matchLabels"], ["notjson", "not JSON"], ["wrongname", 'metadata.name "other" does not match the key']],
    );
    await assert.rejects(store.get(networkPolicyKind, "x", "notjson"), /stored NetworkPolicy x\/notjson is invalid: not JSON/);
  });
});

describe("PolicySource", () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    await etcd.stop();
  });

  test("the initial list: namespaces (also implicit ones), joined endpoints, policies", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    await store.applyAll([ns("prod", { env: "prod" }), pod("prod", "web-1", { app: "web" }, [{ name: "http", containerPort: 8080 }]), np("prod", "deny-all")]);
    await putWep(etcd.client, prefix, wep("prod", "web-1", "node-1", "10.244.1.5"));
    await putWep(etcd.client, prefix, wep("dev", "tool", "node-2", "10.244.2.7"));
    await etcd.client.put(`${prefix}/futurekinds/x`).value("whatever"); // a kind this build does not know: ignored

    const logs = captureLog();
    const src = new PolicySource({ client: etcd.client, log: logs.log, prefix });
    assert.equal(src.synced, false);
    await src.start();
    try {
      assert.equal(src.synced, true);
      const s = src.snapshot();
      assert.deepEqual(s.namespaces, [
        { name: "dev", labels: { "kubernetes.io/metadata.name": "dev" } },
        { name: "prod", labels: { env: "prod", "kubernetes.io/metadata.name": "prod" } },
      ]);
      assert.deepEqual(s.endpoints, [
        // No Pod (and no Namespace) object: labels unknown, so policy isolates it (fail closed).
        { namespace: "dev", pod: "tool", node: "node-2", hostIface: hostIfaceName("dev", "tool"), ips: ["10.244.2.7"], labels: {}, ports: [], metadataKnown: false },
        { namespace: "prod", pod: "web-1", node: "node-1", hostIface: hostIfaceName("prod", "web-1"), ips: ["10.244.1.5"], labels: { app: "web" }, ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }] },
      ]);
      assert.deepEqual(s.networkPolicies.map((p) => `${p.metadata.namespace}/${p.metadata.name}`), ["prod/deny-all"]);
      assert.deepEqual(Object.keys(s.objects).sort(), ["ClusterNetworkPolicy", "GlobalNetworkPolicy", "GlobalNetworkSet", "Namespace", "NetworkPolicy", "NetworkSet", "Node", "Pod"], "every registered kind, [] when none");
      assert.equal(src.objectsOf(networkPolicyKind)[0]?.spec.podSelector !== undefined, true);
      assert.equal(src.snapshot(), s, "the snapshot is cached until something changes");
      assert.deepEqual(src.invalidValues(), []);
    } finally {
      await src.stop();
    }
  });

  test("watch events: put and delete of each kind change the snapshot, one event per change", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    const logs = captureLog();
    const src = new PolicySource({ client: etcd.client, log: logs.log, prefix });
    const events: PolicySourceChange[] = [];
    src.on("changed", (c) => events.push(c));
    await src.start();
    try {
      assert.deepEqual(events.map((e) => e.cause), ["list"]);
      await store.put(ns("prod", { env: "prod" }));
      await waitFor("namespace", () => src.snapshot().namespaces.some((n) => n.labels["env"] === "prod"));
      await putWep(etcd.client, prefix, wep("prod", "web-1", "node-1", "10.244.1.5"));
      await waitFor("endpoint", () => src.snapshot().endpoints.length === 1);
      assert.deepEqual(src.snapshot().endpoints[0]?.labels, {}, "no Pod yet: no labels");
      await store.put(pod("prod", "web-1", { app: "web" }));
      await waitFor("pod labels", () => src.snapshot().endpoints[0]?.labels["app"] === "web");
      await store.put(np("prod", "allow-web", { matchLabels: { app: "web" } }));
      await waitFor("policy", () => src.snapshot().networkPolicies.length === 1);
      assert.deepEqual(
        events.slice(1).map((e) => `${e.cause} ${e.kind}`),
        ["put Namespace", "put WorkloadEndpoint", "put Pod", "put NetworkPolicy"],
      );
      const last = events[events.length - 1] as PolicySourceChange;
      assert.equal(last.key, resourceKey("networkpolicies", "prod", "allow-web", prefix));
      assert.equal(src.snapshot().revision, last.revision);

      await store.deleteAll([{ kind: networkPolicyKind, namespace: "prod", name: "allow-web" }, { kind: podKind, namespace: "prod", name: "web-1" }]);
      await etcd.client.delete().key(workloadEndpointKey("node-1", "prod", "web-1", "eth0", prefix));
      await store.delete({ kind: namespaceKind, name: "prod" });
      await waitFor("everything deleted", () => {
        const s = src.snapshot();
        return s.networkPolicies.length === 0 && s.pods.length === 0 && s.endpoints.length === 0 && s.namespaces.length === 0;
      });
      assert.deepEqual(
        events.slice(5).map((e) => `${e.cause} ${e.kind}`),
        ["delete NetworkPolicy", "delete Pod", "delete WorkloadEndpoint", "delete Namespace"],
      );
    } finally {
      await src.stop();
    }
  });

  test("an invalid value keeps its last good version, or (never valid) stands for a deny-all of its namespace; it never stops the source", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    const logs = captureLog();
    const src = new PolicySource({ client: etcd.client, log: logs.log, prefix });
    let changes = 0;
    src.on("changed", () => changes++);
    await src.start();
    try {
      const key = resourceKey("networkpolicies", "x", "p", prefix);
      const badValue = JSON.stringify(np("x", "p", { matchLabels: { "bad key": "v" } }));
      // Never valid: a deny-all stand-in for namespace x (a broken policy must not open anything).
      await etcd.client.put(key).value(badValue);
      await etcd.client.put(`${prefix}/workloadendpoints/n1/x/pod/eth0`).value(JSON.stringify({ ...wep("x", "other-pod", "n1", "10.0.0.1") }));
      await etcd.client.put(`${prefix}/networkpolicies/too/many/parts`).value("{}");
      await waitFor("three refusals", () => src.invalidValues().length === 3);
      assert.deepEqual(src.snapshot().networkPolicies, []);
      const refused = src.snapshot().refused ?? [];
      assert.deepEqual(refused.map((r) => [r.kind, r.namespace, r.name]), [["NetworkPolicy", "x", "p"]], "only the object key; the endpoint record and the bad key are not objects");
      assert.match(refused[0]?.reason ?? "", /^spec\.podSelector\.matchLabels/);
      // The policy model puts a deny-all of namespace x in its place.
      const standIn = buildPolicyModel(src.snapshot()).policies.find((p) => p.id === "x/p");
      assert.deepEqual([standIn?.tier, standIn?.origin?.kind, standIn?.subject, standIn?.ingress, standIn?.egress], ["namespace", "StandIn", { namespaces: { kind: "name", name: "x" }, pods: {} }, [], []]);
      assert.equal(src.snapshot().endpoints.length, 0);
      assert.deepEqual(
        src.invalidValues().map((v) => [v.key.slice(prefix.length), v.keptLastGood]),
        [
          ["/networkpolicies/too/many/parts", false],
          ["/networkpolicies/x/p", false],
          ["/workloadendpoints/n1/x/pod/eth0", false],
        ],
      );
      assert.ok(logs.records.some((r) => r["msg"] === "invalid value in etcd; refused (a policy gets a fail-closed stand-in)" && r["key"] === key && String(r["reason"]).startsWith("spec.podSelector.matchLabels")));
      assert.ok(logs.records.some((r) => r["msg"] === "invalid value in etcd; ignoring it" && r["key"] === `${prefix}/workloadendpoints/n1/x/pod/eth0`), "a record names no object: it is only ignored");
      assert.equal(changes, 2, "the list, and the stand-in; the other refused values do not change the snapshot");

      // Valid, then broken: the last good version stays.
      await store.put(np("x", "p", { matchLabels: { app: "web" } }));
      await waitFor("valid policy", () => src.snapshot().networkPolicies.length === 1);
      await etcd.client.put(key).value("{not json");
      await waitFor("refusal", () => src.invalidValues().some((v) => v.key === key && v.keptLastGood));
      assert.deepEqual((src.snapshot().networkPolicies[0] as NetworkPolicyObject).spec.podSelector, { matchLabels: { app: "web" } });
      assert.ok(logs.messages().includes("invalid value in etcd; keeping its last good version"));

      // Fixed again; then deleted.
      await store.put(np("x", "p", { matchLabels: { app: "db" } }));
      await waitFor("fixed", () => src.snapshot().networkPolicies[0]?.spec.podSelector.matchLabels?.["app"] === "db");
      assert.ok(!src.invalidValues().some((v) => v.key === key));
      await etcd.client.put(key).value(badValue);
      await waitFor("refused again", () => src.invalidValues().some((v) => v.key === key));
      assert.equal(src.snapshot().refused?.length, 0, "a key with a last good version is not refused: the good version stays");
      await etcd.client.delete().key(key);
      await waitFor("deleted", () => src.snapshot().networkPolicies.length === 0 && !src.invalidValues().some((v) => v.key === key));
      // Still watching.
      await store.put(np("x", "q"));
      await waitFor("still watching", () => src.snapshot().networkPolicies.length === 1);
    } finally {
      await src.stop();
    }
  });

  test("a never-valid cluster-wide policy is refused at startup: the model denies every pod both ways until it is deleted", async () => {
    const prefix = uniquePrefix();
    const key = resourceKey("clusternetworkpolicies", undefined, "tenants", prefix);
    // Written before the agent starts (e.g. by a newer sluicectl): the first list refuses it.
    await etcd.client.put(key).value(JSON.stringify({ apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: { name: "tenants" }, spec: { tier: "Admin", priority: 5000, subject: { namespaces: {} } } }));
    const src = new PolicySource({ client: etcd.client, log: captureLog().log, prefix });
    await src.start();
    try {
      assert.deepEqual(src.snapshot().refused, [{ kind: "ClusterNetworkPolicy", namespace: undefined, name: "tenants", reason: "spec.priority: must be between 0 and 1000" }]);
      assert.deepEqual(src.snapshot().objects["ClusterNetworkPolicy"], []);
      const model = buildPolicyModel(src.snapshot());
      assert.deepEqual(model.policies.map((p) => [p.id, p.tier, p.priority, p.origin?.kind]), [["cnp:tenants", "admin", -1, "StandIn"]]);
      assert.match(model.warnings[0] ?? "", /^ClusterNetworkPolicy tenants cannot be read \(spec\.priority: must be between 0 and 1000\); every pod is denied/);
      await etcd.client.delete().key(key);
      await waitFor("the refusal goes with the key", () => src.snapshot().refused?.length === 0);
      assert.deepEqual(buildPolicyModel(src.snapshot()).policies, []);
    } finally {
      await src.stop();
    }
  });

  test("large values are validated off the event loop and applied in etcd's order", async () => {
    const prefix = uniquePrefix();
    const logs = captureLog();
    const key = resourceKey("networkpolicies", "x", "big", prefix);
    // 20,000 copies of one peer: about 700 KiB, validated in the worker thread.
    const big = (peer: object): KubeObject => np("x", "big", {}, { ingress: [{ from: Array.from({ length: 20_000 }, () => peer) }] });
    await etcd.client.put(key).value(JSON.stringify(big({ podSelector: { matchLabels: { app: "a" } } })));
    const src = new PolicySource({ client: etcd.client, log: logs.log, prefix });
    await src.start();
    try {
      const listed = src.snapshot().networkPolicies[0];
      assert.deepEqual(listed?.spec.ingress?.[0]?.from, [{ podSelector: { matchLabels: { app: "a" } } }], "listed, validated, its 19,999 copies of the peer dropped");
      assert.ok(logs.records.some((r) => r["msg"] === COPIES_IGNORED && r["copies"] === 19_999 && r["key"] === key));
      assert.equal(listed?.metadata.resourceVersion, (await etcd.client.get(key).exec()).kvs[0]?.mod_revision);
      // A large invalid version, a small change after it, then a large valid one: in that order.
      await etcd.client.put(key).value(JSON.stringify(big({ ipBlock: { cidr: "10.0.0.0/33" } })));
      await etcd.client.put(resourceKey("networkpolicies", "x", "small", prefix)).value(JSON.stringify(np("x", "small")));
      await waitFor("the small policy", () => src.snapshot().networkPolicies.some((n) => n.metadata.name === "small"));
      assert.deepEqual(src.invalidValues().map((v) => [v.key, v.keptLastGood]), [[key, true]], "the large one was refused first (its last good version stays)");
      assert.match(src.invalidValues()[0]?.reason ?? "", /^spec\.ingress\[0\]\.from\[0\]\.ipBlock\.cidr: must be a CIDR/);
      await etcd.client.put(key).value(JSON.stringify(big({ podSelector: { matchLabels: { app: "b" } } })));
      await etcd.client.delete().key(resourceKey("networkpolicies", "x", "small", prefix));
      await waitFor("the small one deleted", () => !src.snapshot().networkPolicies.some((n) => n.metadata.name === "small"));
      assert.equal(src.snapshot().networkPolicies[0]?.spec.ingress?.[0]?.from?.[0]?.podSelector?.matchLabels?.["app"], "b", "the large put before the delete applied first");
      assert.deepEqual(src.invalidValues(), []);

    } finally {
      await src.stop();
    }
  });

  test("a listener that throws does not stop the source", async () => {
    const prefix = uniquePrefix();
    const logs = captureLog();
    const src = new PolicySource({ client: etcd.client, log: logs.log, prefix });
    await src.start();
    src.on("changed", () => {
      throw new Error("listener bug");
    });
    try {
      await new EtcdResourceStore(etcd.client, { prefix }).put(np("x", "a"));
      await waitFor("policy", () => src.snapshot().networkPolicies.length === 1);
      await new EtcdResourceStore(etcd.client, { prefix }).put(np("x", "b"));
      await waitFor("second policy", () => src.snapshot().networkPolicies.length === 2);
      assert.ok(logs.messages().includes("a policy source listener failed"));
    } finally {
      await src.stop();
    }
  });
});

describe("PolicySource through etcd outages", () => {
  let etcd: TestEtcd;
  let restarted: Awaited<ReturnType<typeof startEtcd>> | undefined;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    try {
      process.kill(etcd.server.pid, "SIGCONT");
    } catch {
      // already gone
    }
    await restarted?.stop();
    await etcd.stop();
  });

  const port = (): number => Number(new URL(etcd.server.endpoint).port);

  test("a stopped etcd keeps the snapshot; the source relists after a restart and sees changes made meanwhile", async () => {
    const prefix = uniquePrefix();
    const store = new EtcdResourceStore(etcd.client, { prefix });
    await store.applyAll([ns("prod"), np("prod", "keep"), np("prod", "goes-away"), np("prod", "breaks", { matchLabels: { app: "web" } })]);
    const client = connectEtcd(etcd.connection());
    const logs = captureLog();
    const src = new PolicySource({ client, log: logs.log, prefix, initialBackoffMs: 500, maxBackoffMs: 2000, requestTimeoutMs: 2000 });
    try {
      await src.start();
      await waitFor("live", () => src.live);
      const before = src.snapshot();
      assert.equal(before.networkPolicies.length, 3);

      await etcd.server.stop();
      await waitFor("watch loss noticed", () => !src.live);
      await waitFor("a failed relist", () => logs.messages().includes("policy relist failed; keeping the last good snapshot"));
      assert.equal(src.synced, true, "still synced: the last good snapshot");
      assert.deepEqual(src.snapshot().networkPolicies, before.networkPolicies, "the snapshot survives the outage");

      // Change things while the source cannot reach etcd: etcd comes back on its unix
      // socket only (the source uses TCP), takes the writes, then returns on TCP as well.
      const listsBefore = src.listCount;
      const socketOnly = await startEtcd({ dir: etcd.server.dir });
      const writer = connectEtcd(etcdConnection(socketOnly));
      const w = new EtcdResourceStore(writer, { prefix });
      await w.delete({ kind: networkPolicyKind, namespace: "prod", name: "goes-away" });
      await w.put(np("prod", "new"));
      await writer.put(resourceKey("networkpolicies", "prod", "breaks", prefix)).value("{broken");
      writer.close();
      await socketOnly.stop();
      assert.equal(src.listCount, listsBefore, "no relist while etcd was away from TCP");
      restarted = await startEtcd({ dir: etcd.server.dir, tcpPort: port() });

      await waitFor("relist", () => src.listCount > listsBefore && src.live, 30_000);
      const after = src.snapshot();
      assert.deepEqual(after.networkPolicies.map((p) => p.metadata.name), ["breaks", "keep", "new"]);
      assert.deepEqual(after.networkPolicies[0]?.spec.podSelector, { matchLabels: { app: "web" } }, "the broken one keeps its last good version across the relist");
      assert.ok(logs.messages().includes("policy data relisted"));

      // And the new watch works.
      const writer2 = connectEtcd(etcdConnection(restarted));
      await new EtcdResourceStore(writer2, { prefix }).put(np("prod", "after-restart"));
      writer2.close();
      await waitFor("event after the restart", () => src.snapshot().networkPolicies.some((p) => p.metadata.name === "after-restart"));
    } finally {
      await src.stop();
      client.close();
    }
  });

  test("a hung etcd (SIGSTOP) leaves the snapshot in place; events flow again after SIGCONT", async () => {
    const server = restarted ?? etcd.server;
    const prefix = uniquePrefix();
    const client = connectEtcd(etcdConnection(server));
    const logs = captureLog();
    const src = new PolicySource({ client, log: logs.log, prefix, requestTimeoutMs: 2000 });
    try {
      await new EtcdResourceStore(client, { prefix }).put(np("x", "a"));
      await src.start();
      assert.equal(src.snapshot().networkPolicies.length, 1);
      process.kill(server.pid, "SIGSTOP");
      await sleep(3000);
      assert.equal(src.synced, true);
      assert.equal(src.snapshot().networkPolicies.length, 1);
      process.kill(server.pid, "SIGCONT");
      const writer = connectEtcd(etcdConnection(server));
      await new EtcdResourceStore(writer, { prefix }).put(np("x", "b"));
      writer.close();
      await waitFor("event after SIGCONT", () => src.snapshot().networkPolicies.length === 2, 20_000);
    } finally {
      process.kill(server.pid, "SIGCONT");
      await src.stop();
      client.close();
    }
  });

  test("start() keeps trying until etcd answers, and stop() ends a source that never synced", async () => {
    const logs = captureLog();
    const client = connectEtcd({ endpoints: ["http://127.0.0.1:1"] });
    const src = new PolicySource({ client, log: logs.log, prefix: uniquePrefix(), initialBackoffMs: 100, maxBackoffMs: 200, requestTimeoutMs: 500 });
    const started = src.start();
    await waitFor("retries", () => logs.messages().filter((m) => m === "cannot list the policy data yet").length >= 2);
    await src.stop();
    await assert.rejects(started, /stopped before its first list/);
    assert.equal(src.synced, false);
    client.close();
  });
});
