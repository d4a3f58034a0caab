/**
 * KubeSubnetManager against the fake API server with the real client library: subnets from
 * the node's pod CIDRs, annotations published through nodes/status (only when they differ,
 * the VTEP MAC kept across a restart), NetworkUnavailable=False, peers coming and going,
 * and an API outage that leaves the peers as they were.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { KubeSubnetManager, PodCidrNotAssignedError, annotationKeys } from "../../src/datastore/kubeSubnetManager.js";
import type { Lease, LeaseAttrs } from "../../src/model/lease.js";
import { formatCidr, parseIp } from "../../src/model/ip.js";
import { FakeKubeApi, type FakeObject } from "../helpers/fakeKubeApi.js";
import { kubeConfigFor, nodeObject, until } from "../helpers/kube.js";
import { captureLog } from "../helpers/log.js";

const PREFIX = "sluice.dev";
const K = annotationKeys(PREFIX);
const MAC = "0e:2a:aa:bb:cc:01";

describe("KubeSubnetManager", () => {
  let api: FakeKubeApi;
  let kc: KubeConfig;
  let dir: string;
  const managers: KubeSubnetManager[] = [];

  before(async () => {
    api = await FakeKubeApi.start();
    kc = await kubeConfigFor(api);
    dir = mkdtempSync(join(tmpdir(), "sluice-ksm-"));
    writeFileSync(join(dir, "v4.json"), JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }));
    writeFileSync(join(dir, "dual.json"), JSON.stringify({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fd00:244::/48", IPv6SubnetLen: 64, Backend: { Type: "vxlan" } }));
  });
  after(async () => {
    for (const m of managers) await m.stop();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    for (const n of api.list("v1", "Node")) api.remove({ apiVersion: "v1", kind: "Node", name: n.metadata.name });
    api.clearRequests();
  });

  function manager(nodeName: string, o: { config?: string; podCidrWaitMs?: number } = {}): { m: KubeSubnetManager; log: ReturnType<typeof captureLog> } {
    const log = captureLog();
    const m = new KubeSubnetManager({ kc, nodeName, netConfigPath: join(dir, o.config ?? "v4.json"), log: log.log, initialBackoffMs: 20, maxBackoffMs: 100, ...(o.podCidrWaitMs !== undefined ? { podCidrWaitMs: o.podCidrWaitMs } : {}) });
    managers.push(m);
    return { m, log };
  }

  const attrs = (name: string, mac = MAC, publicIP = "192.168.50.11"): LeaseAttrs => ({ PublicIP: publicIP, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: mac }, NodeName: name });
  const acquireOpts = (a: () => LeaseAttrs) => ({ publicIP: parseIp("192.168.50.11"), publicIPv6: undefined, attrs: a, previous: undefined });
  const annotationPatches = (): number => api.requests({ method: "PATCH", path: "/status" }).filter((r) => JSON.stringify(r.body).includes("annotations")).length;

  test("the subnet is the node's podCIDR; annotations are patched through nodes/status, and only when they differ; the VTEP MAC survives a restart", async () => {
    api.put(nodeObject("n1", { podCIDRs: ["10.244.1.0/24"] }));
    const { m } = manager("n1");
    const network = await m.networkConfig();
    assert.equal(network.backend.type, "vxlan");
    assert.equal(await m.previousAttrs(undefined, undefined), undefined, "nothing published yet");
    const lease = await m.acquire(acquireOpts(() => attrs("n1")));
    assert.equal(lease.subnet && formatCidr(lease.subnet), "10.244.1.0/24");
    assert.equal(lease.subnet6, undefined);
    assert.equal(m.kind, "kubernetes");
    assert.equal(m.healthy, true);
    const patches = api.requests({ method: "PATCH" });
    assert.equal(patches.length, 1);
    assert.equal(patches[0]?.path, "/api/v1/nodes/n1/status", "published through the status subresource, as flannel");
    assert.equal(patches[0]?.contentType, "application/strategic-merge-patch+json");
    const ann = (api.get({ apiVersion: "v1", kind: "Node", name: "n1" }) as FakeObject).metadata["annotations"] as Record<string, string>;
    assert.equal(ann[K.backendType], "vxlan");
    assert.deepEqual(JSON.parse(ann[K.backendData] as string), { VNI: 1, VtepMAC: MAC });
    assert.equal(ann[K.publicIP], "192.168.50.11");
    assert.equal(ann[K.subnetKubeManaged], "true");
    assert.equal(ann[K.backendV6Data], undefined);

    // A restarted agent: it finds its old attrs (the VTEP MAC) and re-publishing them patches nothing.
    await m.stop();
    const { m: again } = manager("n1");
    await again.networkConfig();
    const previous = await again.previousAttrs(undefined, undefined);
    assert.deepEqual(previous?.BackendData, { VNI: 1, VtepMAC: MAC });
    api.clearRequests();
    await again.acquire(acquireOpts(() => attrs("n1", (previous?.BackendData as { VtepMAC: string }).VtepMAC)));
    assert.equal(api.requests({ method: "PATCH" }).length, 0, "no patch when the annotations are already right");
    // A new public IP is published.
    await again.acquire(acquireOpts(() => attrs("n1", MAC, "192.168.50.99")));
    assert.equal(annotationPatches(), 1);
    assert.equal(((api.get({ apiVersion: "v1", kind: "Node", name: "n1" }) as FakeObject).metadata["annotations"] as Record<string, string>)[K.publicIP], "192.168.50.99");
  });

  test("dual-stack: both subnets from podCIDRs, the IPv6 backend data and address published", async () => {
    api.put(nodeObject("d1", { podCIDRs: ["10.244.3.0/24", "fd00:244:0:3::/64"] }));
    const { m } = manager("d1", { config: "dual.json" });
    await m.networkConfig();
    const lease = await m.acquire({ publicIP: parseIp("192.168.50.13"), publicIPv6: parseIp("fd00:50::13"), attrs: () => ({ ...attrs("d1", MAC, "192.168.50.13"), PublicIPv6: "fd00:50::13", BackendV6Data: { VNI: 1, VtepMAC: "0e:2a:aa:bb:cc:66" } }), previous: undefined });
    assert.equal(lease.subnet && formatCidr(lease.subnet), "10.244.3.0/24");
    assert.equal(lease.subnet6 && formatCidr(lease.subnet6), "fd00:244:0:3::/64");
    const ann = (api.get({ apiVersion: "v1", kind: "Node", name: "d1" }) as FakeObject).metadata["annotations"] as Record<string, string>;
    assert.equal(ann[K.publicIPv6], "fd00:50::13");
    assert.deepEqual(JSON.parse(ann[K.backendV6Data] as string), { VNI: 1, VtepMAC: "0e:2a:aa:bb:cc:66" });
  });

  test("no pod CIDR: a clear error naming the node; while waiting it says why, and takes the CIDR once assigned", async () => {
    api.put(nodeObject("bare"));
    const { m } = manager("bare", { podCidrWaitMs: 0 });
    await m.networkConfig();
    await assert.rejects(m.acquire(acquireOpts(() => attrs("bare"))), (err: unknown) => err instanceof PodCidrNotAssignedError && /node "bare" has no IPv4 pod CIDR assigned/.test(err.message) && /--allocate-node-cidrs/.test(err.message));

    // Dual-stack config, node with only an IPv4 CIDR: the IPv6 one is missing.
    api.put(nodeObject("half", { podCIDRs: ["10.244.4.0/24"] }));
    const { m: half } = manager("half", { config: "dual.json", podCidrWaitMs: 0 });
    await half.networkConfig();
    await assert.rejects(half.acquire(acquireOpts(() => attrs("half"))), /node "half" has no IPv6 pod CIDR assigned/);

    // Waiting (the default): the node does not exist yet, then has no CIDR, then gets one.
    const { m: waiting, log } = manager("late");
    await waiting.networkConfig();
    const acquired = waiting.acquire(acquireOpts(() => attrs("late")));
    await until("not-found logged", () => log.messages().some((s) => s.includes('node "late" does not exist')));
    api.put(nodeObject("late"));
    await until("no-CIDR logged", () => log.messages().some((s) => s.includes('node "late" has no IPv4 pod CIDR assigned')));
    api.put(nodeObject("late", { podCIDRs: ["10.244.5.0/24"] }));
    const lease = await acquired;
    assert.equal(lease.subnet && formatCidr(lease.subnet), "10.244.5.0/24");
  });

  test("markReady sets NetworkUnavailable=False through nodes/status, once", async () => {
    const n = nodeObject("r1", { podCIDRs: ["10.244.6.0/24"] });
    (n["status"] as { conditions: unknown[] }).conditions.push({ type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" });
    api.put(n);
    const { m } = manager("r1");
    await m.markReady();
    const conds = ((api.get({ apiVersion: "v1", kind: "Node", name: "r1" }) as FakeObject)["status"] as { conditions: { type: string; status: string; reason?: string }[] }).conditions;
    const nu = conds.find((c) => c.type === "NetworkUnavailable");
    assert.deepEqual([nu?.status, nu?.reason], ["False", "SluiceIsUp"]);
    assert.equal(conds.find((c) => c.type === "Ready")?.status, "True", "other conditions untouched (strategic merge by type)");
    const patches = api.requests({ method: "PATCH", path: "/api/v1/nodes/r1/status" });
    assert.equal(patches.length, 1);
    await m.markReady();
    assert.equal(api.requests({ method: "PATCH", path: "/api/v1/nodes/r1/status" }).length, 1, "no patch when it is already False");
    const off = new KubeSubnetManager({ kc, nodeName: "r1", netConfigPath: join(dir, "v4.json"), log: captureLog().log, setNodeNetworkUnavailable: false });
    await off.markReady();
    assert.equal(api.requests({ method: "PATCH" }).length, 1);
  });

  test("peers: nodes with the annotations and a pod CIDR; they appear, change and leave; an API outage keeps them; a relist after it catches up", async () => {
    const published = (ip: string, mac: string): Record<string, string> => ({ [K.subnetKubeManaged]: "true", [K.backendType]: "vxlan", [K.backendData]: JSON.stringify({ VNI: 1, VtepMAC: mac }), [K.publicIP]: ip });
    api.put(nodeObject("p1", { podCIDRs: ["10.244.1.0/24"], annotations: published("192.168.50.11", "0e:2a:00:00:00:01") }));
    api.put(nodeObject("p2", { podCIDRs: ["10.244.2.0/24"] })); // not (yet) running Sluice
    const { m } = manager("p1");
    let events = 0;
    m.on("peers", () => events++);
    await m.startPeerWatch();
    const names = (): string[] => m.peers().map((l) => `${l.attrs.NodeName} ${l.subnet && formatCidr(l.subnet)} ${l.attrs.PublicIP}`);
    assert.deepEqual(names(), ["p1 10.244.1.0/24 192.168.50.11"]);
    await until("watch connected", () => m.live);

    api.put(nodeObject("p2", { podCIDRs: ["10.244.2.0/24"], annotations: published("192.168.50.12", "0e:2a:00:00:00:02") }));
    await until("p2 appears", () => names().length === 2);
    assert.equal((m.peers()[1]?.attrs.BackendData as { VtepMAC: string }).VtepMAC, "0e:2a:00:00:00:02");
    const before = events;
    // A status heartbeat changes nothing a peer needs: no event.
    const p2 = api.get({ apiVersion: "v1", kind: "Node", name: "p2" }) as FakeObject;
    api.put({ ...p2, status: { ...(p2["status"] as object), heartbeat: "x" } });
    api.put(nodeObject("p3", { podCIDRs: ["10.244.3.0/24"], annotations: published("192.168.50.13", "0e:2a:00:00:00:03") }));
    await until("p3 appears", () => names().length === 3);
    assert.equal(events, before + 1, "one event for p3, none for the heartbeat");
    api.remove({ apiVersion: "v1", kind: "Node", name: "p3" });
    await until("p3 leaves", () => names().length === 2);

    // Outage: the peers stay; changes made meanwhile (history compacted) arrive after it.
    await api.outage();
    await until("not live", () => !m.live);
    assert.equal(names().length, 2);
    api.remove({ apiVersion: "v1", kind: "Node", name: "p2" });
    api.put(nodeObject("p4", { podCIDRs: ["10.244.4.0/24"], annotations: published("192.168.50.14", "0e:2a:00:00:00:04") }));
    api.compact();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(names().length, 2, "nothing changes while the API server is away");
    await api.recover();
    await until("relisted after the outage", () => names().join(",") === "p1 10.244.1.0/24 192.168.50.11,p4 10.244.4.0/24 192.168.50.14");
    await until("live again", () => m.live);
  });

  test("our node's pod CIDR changing under us is reported as a changed lease; our node deleted makes us unhealthy", async () => {
    api.put(nodeObject("c1", { podCIDRs: ["10.244.8.0/24"] }));
    const { m } = manager("c1");
    await m.networkConfig();
    await m.acquire(acquireOpts(() => attrs("c1")));
    await m.startPeerWatch();
    const changes: string[] = [];
    m.on("changed", (lease: Lease, old: Lease) => changes.push(`${lease.subnet && formatCidr(lease.subnet)} was ${old.subnet && formatCidr(old.subnet)}`));
    const n = api.get({ apiVersion: "v1", kind: "Node", name: "c1" }) as FakeObject;
    api.put({ ...n, spec: { podCIDR: "10.244.9.0/24", podCIDRs: ["10.244.9.0/24"] } });
    await until("changed", () => changes.length === 1);
    assert.deepEqual(changes, ["10.244.9.0/24 was 10.244.8.0/24"]);
    assert.equal(m.lease?.subnet && formatCidr(m.lease.subnet), "10.244.9.0/24");
    assert.equal(m.healthy, true);
    api.remove({ apiVersion: "v1", kind: "Node", name: "c1" });
    await until("unhealthy", () => !m.healthy);
  });

  test("public-ip-overwrite on our node replaces the published address", async () => {
    api.put(nodeObject("o1", { podCIDRs: ["10.244.7.0/24"], annotations: { [K.publicIPOverwrite]: "203.0.113.7" } }));
    const { m } = manager("o1");
    await m.networkConfig();
    const lease = await m.acquire(acquireOpts(() => attrs("o1")));
    assert.equal(lease.attrs.PublicIP, "203.0.113.7");
    assert.equal(((api.get({ apiVersion: "v1", kind: "Node", name: "o1" }) as FakeObject).metadata["annotations"] as Record<string, string>)[K.publicIP], "203.0.113.7");
  });

  test("a missing or bad net-conf.json is a ConfigError naming the flag or the key", async () => {
    const { m } = manager("x", { config: "missing.json" });
    await assert.rejects(m.networkConfig(), /--net-config-path: cannot read/);
    writeFileSync(join(dir, "bad.json"), JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "gce" } }));
    const { m: bad } = manager("x", { config: "bad.json" });
    await assert.rejects(bad.networkConfig(), /Backend.Type/);
  });
});
