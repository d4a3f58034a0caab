/**
 * The fake API server against the real @kubernetes/client-node: what the datastore tests
 * rely on must behave as with a real API server (lists, watches, 410 Gone, patches).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import type { CoreV1Api, KubeConfig, KubernetesObject, V1Node } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { FakeKubeApi, FakeKubeApiProcess, type FakeObject } from "../helpers/fakeKubeApi.js";
import { nodeObject, podObject, until } from "../helpers/kube.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";
import { nsExec } from "../../src/sandbox/netns.js";

// @kubernetes/client-node (2.x) is ESM only: loaded with import() from our CommonJS build.
type K8s = typeof import("@kubernetes/client-node", { with: { "resolution-mode": "import" } });
let k8s: K8s;
before(async () => {
  k8s = await import("@kubernetes/client-node");
});

const node = (name: string, extra: Record<string, unknown> = {}): FakeObject => ({ ...nodeObject(name, { podCIDRs: ["10.244.1.0/24"] }), ...extra });
const pod = (ns: string, name: string, labels: Record<string, string> = {}): FakeObject => podObject(ns, name, { node: "n1", ips: ["10.244.1.5"], labels });

function clientFor(api: { kubeconfig(): string }): { kc: KubeConfig; core: CoreV1Api } {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(api.kubeconfig());
  return { kc, core: kc.makeApiClient(k8s.CoreV1Api) };
}

/** Raw GET: status and body lines (for watch streams, until `lines` arrived or the stream ends). */
function rawGet(url: string, lines = Infinity, timeoutMs = 3000): Promise<{ status: number; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const out: string[] = [];
    let buf = "";
    const req = request(url, (res) => {
      const done = (): void => {
        clearTimeout(t);
        req.destroy();
        resolve({ status: res.statusCode ?? 0, lines: out });
      };
      const t = setTimeout(done, timeoutMs);
      res.on("data", (c: Buffer) => {
        buf += c.toString();
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          out.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
          if (out.length >= lines) done();
        }
      });
      res.on("end", () => {
        if (buf) out.push(buf);
        done();
      });
    });
    req.on("error", reject);
    req.end();
  });
}

describe("fake Kubernetes API server with the real client library", () => {
  let api: FakeKubeApi;
  before(async () => {
    api = await FakeKubeApi.start();
  });
  after(async () => {
    await api.stop();
  });

  test("list, get, 404 and list metadata through CoreV1Api", async () => {
    api.put(node("a"));
    api.put(node("b"));
    const { core } = clientFor(api);
    const list = await core.listNode();
    assert.deepEqual(
      list.items.map((n) => n.metadata?.name),
      ["a", "b"],
    );
    assert.equal(list.metadata?.resourceVersion, api.resourceVersion);
    const raw = await rawGet(`${api.url}/api/v1/nodes`);
    const parsed = JSON.parse(raw.lines.join("")) as { kind: string; items: Record<string, unknown>[] };
    assert.equal(parsed.kind, "NodeList");
    assert.equal(parsed.items[0]?.["kind"], undefined, "built-in list items carry no kind, as from a real API server");
    const a = await core.readNode({ name: "a" });
    assert.equal(a.spec?.podCIDR, "10.244.1.0/24");
    await assert.rejects(core.readNode({ name: "nope" }), (err: unknown) => err instanceof k8s.ApiException && err.code === 404);
    api.remove({ apiVersion: "v1", kind: "Node", name: "a" });
    api.remove({ apiVersion: "v1", kind: "Node", name: "b" });
  });

  test("failLists answers lists (not discovery) with a status; uninstall drops a resource from discovery and its paths", async () => {
    const cnp = "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies";
    const discovery = async (): Promise<{ status: number; names: string[] }> => {
      const r = await rawGet(`${api.url}/apis/policy.networking.k8s.io/v1alpha2`);
      const body = r.status === 200 ? (JSON.parse(r.lines.join("")) as { resources: Array<{ name: string }> }) : { resources: [] };
      return { status: r.status, names: body.resources.map((x) => x.name) };
    };
    api.put({ apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: { name: "c1" }, spec: {} });
    api.failLists("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", 404);
    assert.equal((await rawGet(`${api.url}${cnp}`)).status, 404);
    assert.deepEqual(await discovery(), { status: 200, names: ["clusternetworkpolicies"] }, "discovery still serves it");
    assert.equal((await rawGet(`${api.url}${cnp}/c1`)).status, 200, "only lists fail");
    api.failLists("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", 0);
    assert.equal((await rawGet(`${api.url}${cnp}`)).status, 200);
    assert.ok(api.requests({ path: cnp }).every((r) => r.remote === "127.0.0.1"), "the request log names the client");
    api.uninstall("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy");
    assert.equal((await discovery()).status, 404, "a group/version with nothing served is gone");
    assert.equal((await rawGet(`${api.url}${cnp}`)).status, 404);
    api.install("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy");
    assert.deepEqual(await discovery(), { status: 200, names: ["clusternetworkpolicies"] });
    assert.deepEqual(JSON.parse((await rawGet(`${api.url}${cnp}`)).lines.join("")).items, [], "installed again, empty");
  });

  test("patches: strategic merge of annotations and conditions, status only through /status, no-op keeps the version, 409 on a stale resourceVersion", async () => {
    api.put(node("p", { status: { conditions: [{ type: "Ready", status: "True" }] } }));
    const { core } = clientFor(api);
    const smp = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.StrategicMergePatch);
    const patched = await core.patchNode({ name: "p", body: { metadata: { annotations: { "x/a": "1" } }, status: { conditions: [{ type: "Ready", status: "False" }] } } }, smp);
    assert.equal(patched.metadata?.annotations?.["x/a"], "1");
    assert.equal(patched.status?.conditions?.[0]?.status, "True", "status does not change through the main resource");
    const rv = patched.metadata?.resourceVersion;
    const again = await core.patchNode({ name: "p", body: { metadata: { annotations: { "x/a": "1" } } } }, smp);
    assert.equal(again.metadata?.resourceVersion, rv, "a patch that changes nothing keeps the resourceVersion");
    const st = await core.patchNodeStatus({ name: "p", body: { status: { conditions: [{ type: "NetworkUnavailable", status: "False", reason: "R" }] }, spec: { podCIDR: "1.2.3.0/24" } } }, smp);
    assert.deepEqual(
      st.status?.conditions?.map((c) => `${c.type}=${c.status}`),
      ["Ready=True", "NetworkUnavailable=False"],
    );
    assert.equal(st.spec?.podCIDR, "10.244.1.0/24", "spec does not change through /status");
    const merge = await core.patchNode({ name: "p", body: { metadata: { annotations: { "x/a": null, "x/b": "2" } } } }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
    assert.deepEqual(merge.metadata?.annotations, { "x/b": "2" });
    const jp = await core.patchNode({ name: "p", body: [{ op: "add", path: "/metadata/labels/x~1c", value: "3" }] }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch));
    assert.equal(jp.metadata?.labels?.["x/c"], "3");
    await assert.rejects(core.patchNode({ name: "p", body: { metadata: { resourceVersion: "1", annotations: { a: "b" } } } }, smp), (err: unknown) => err instanceof k8s.ApiException && err.code === 409);
    const log = api.requests({ method: "PATCH", path: "/api/v1/nodes/p/status" });
    assert.equal(log.length, 1);
    assert.equal(log[0]?.contentType, "application/strategic-merge-patch+json");
    api.remove({ apiVersion: "v1", kind: "Node", name: "p" });
  });

  test("watch: replay from a resourceVersion, selector transitions, bookmarks, 410 as an ERROR event or an HTTP status", async () => {
    const start = api.resourceVersion;
    api.put(pod("w", "a", { app: "x" }));
    api.put(pod("w", "a", { app: "y" }));
    api.put(pod("w", "b", { app: "x" }));
    api.remove({ apiVersion: "v1", kind: "Pod", namespace: "w", name: "b" });
    const all = await rawGet(`${api.url}/api/v1/namespaces/w/pods?watch=true&resourceVersion=${start}`, 4);
    assert.deepEqual(
      all.lines.map((l) => (JSON.parse(l) as { type: string }).type),
      ["ADDED", "MODIFIED", "ADDED", "DELETED"],
    );
    const sel = await rawGet(`${api.url}/api/v1/pods?watch=true&resourceVersion=${start}&labelSelector=${encodeURIComponent("app in (x)")}`, 4);
    assert.deepEqual(
      sel.lines.map((l) => {
        const e = JSON.parse(l) as { type: string; object: { metadata: { name: string } } };
        return `${e.type} ${e.object.metadata.name}`;
      }),
      ["ADDED a", "DELETED a", "ADDED b", "DELETED b"],
    );
    const initial = await rawGet(`${api.url}/api/v1/pods?watch=1`, 1);
    assert.equal((JSON.parse(initial.lines[0] as string) as { type: string; object: { kind: string } }).object.kind, "Pod");
    api.compact();
    const gone = await rawGet(`${api.url}/api/v1/pods?watch=true&resourceVersion=${start}`);
    assert.equal(gone.status, 200);
    const err = JSON.parse(gone.lines[0] as string) as { type: string; object: { code: number; reason: string } };
    assert.deepEqual([err.type, err.object.code, err.object.reason], ["ERROR", 410, "Expired"]);
    const other = await FakeKubeApi.start({ goneAsHttpStatus: true, bookmarkIntervalMs: 50 });
    try {
      other.put(pod("w", "a"));
      other.compact();
      assert.equal((await rawGet(`${other.url}/api/v1/pods?watch=true&resourceVersion=1`)).status, 410);
      const bm = await rawGet(`${other.url}/api/v1/pods?watch=true&resourceVersion=${other.resourceVersion}&allowWatchBookmarks=true`, 1);
      assert.equal((JSON.parse(bm.lines[0] as string) as { type: string }).type, "BOOKMARK");
    } finally {
      await other.stop();
    }
    api.remove({ apiVersion: "v1", kind: "Pod", namespace: "w", name: "a" });
  });

  test("informer (makeInformer): events, then a 410 mid-watch makes it relist, and an outage surfaces as an error it can restart from", async () => {
    const { kc, core } = clientFor(api);
    const inf = k8s.makeInformer<KubernetesObject>(kc, "/api/v1/nodes", () => core.listNode() as Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }>);
    const seen: string[] = [];
    const errors: unknown[] = [];
    inf.on("add", (o) => seen.push(`add ${o.metadata?.name}`));
    inf.on("update", (o) => seen.push(`update ${o.metadata?.name}`));
    inf.on("delete", (o) => seen.push(`delete ${o.metadata?.name}`));
    inf.on("error", (e) => errors.push(e));
    api.put(node("i1"));
    await inf.start();
    await until("initial add", () => seen.includes("add i1"));
    await until("watch open", () => (api.watchCounts()["v1/nodes"] ?? 0) === 1);
    api.put(node("i2"));
    await until("add i2", () => seen.includes("add i2"));
    // 410 mid-watch: the change made meanwhile arrives through a relist.
    const lists = api.requests({ method: "GET", path: "/api/v1/nodes" }).filter((r) => !r.watch).length;
    api.expireWatches();
    api.remove({ apiVersion: "v1", kind: "Node", name: "i1" });
    await until("relist delete i1", () => seen.includes("delete i1"));
    assert.equal(api.requests({ method: "GET", path: "/api/v1/nodes" }).filter((r) => !r.watch).length, lists + 1);
    // Outage: the watch ends, reconnecting fails, the informer reports an error and stops.
    await api.outage();
    await until("error", () => errors.length > 0);
    api.put(node("i3"));
    api.compact();
    await api.recover();
    await inf.start(); // what our datastore does after a back-off
    await until("add i3 after recovery", () => seen.includes("add i3"));
    await inf.stop();
    api.remove({ apiVersion: "v1", kind: "Node", name: "i2" });
    api.remove({ apiVersion: "v1", kind: "Node", name: "i3" });
  });
});

describe("fake Kubernetes API server as a child process", () => {
  const prefix = uniquePrefix("fka");
  after(async () => {
    await removeNetnsWithPrefix(prefix);
  });

  test("on loopback: controlled over IPC, served to the real client", async () => {
    const p = await FakeKubeApiProcess.start();
    try {
      await p.control.put(node("c1"));
      const { core } = clientFor({ kubeconfig: () => p.url && kubeconfigFor(p.url) });
      const n: V1Node = await core.readNode({ name: "c1" });
      assert.equal(n.metadata?.name, "c1");
      assert.equal((await p.control.requests({ path: "/api/v1/nodes/c1" })).length, 1);
      await p.control.outage();
      await assert.rejects(core.readNode({ name: "c1" }));
      await p.control.recover();
      assert.equal((await core.readNode({ name: "c1" })).metadata?.name, "c1");
      assert.equal((await p.control.get({ apiVersion: "v1", kind: "Node", name: "c1" }))?.metadata.name, "c1");
    } finally {
      await p.stop();
    }
  });

  test("inside a network namespace (reached from inside it)", async () => {
    const ns = await makeNetns(`${prefix}-api`);
    const p = await FakeKubeApiProcess.start({ netns: ns, host: "127.0.0.1", port: 6443 });
    try {
      assert.equal(p.url, "http://127.0.0.1:6443");
      await p.control.put(node("nsnode"));
      const out = await nsExec(ns, "curl", ["-s", `${p.url}/api/v1/nodes/nsnode`]);
      assert.equal((JSON.parse(out) as { metadata: { name: string } }).metadata.name, "nsnode");
    } finally {
      await p.stop();
    }
  });
});

function kubeconfigFor(url: string): string {
  return `apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: ${url}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n`;
}
