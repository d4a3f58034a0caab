import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { workloadEndpointKey, workloadEndpointPrefix } from "../../src/datastore/resourceKeys.js";
import { type CniNode, invokeCni, makeCniNode } from "../helpers/cni.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { uniquePrefix } from "../helpers/netns.js";

describe("sluice-cni in etcd mode", () => {
  const prefix = uniquePrefix("cnie");
  const PFX = "/sluice-cni-test";
  let node: CniNode;
  let etcd: TestEtcd;
  let conf: Record<string, unknown>;
  const nodeName = (): string => `${prefix}-node`;
  const keys = async (): Promise<string[]> => (await etcd.client.getAll().prefix(`${PFX}/`).keys()).sort();

  before(async () => {
    etcd = await startTestEtcd();
    node = await makeCniNode(prefix, 33, "10.244.11.1/24");
    // The unix socket: a file, so the plugin reaches it from inside the node namespace.
    conf = node.conf({ etcdEndpoints: [etcd.server.endpoints[0]], etcdPrefix: PFX });
  });
  after(async () => {
    await node?.destroy();
    await etcd?.stop();
  });

  test("ADD records the WorkloadEndpointRecord; DEL removes it", async () => {
    const pod = await node.pod("w");
    const add = await node.add(pod, "ctr-w", "w", { conf });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const key = workloadEndpointKey(nodeName(), "ns1", "w", "eth0", PFX);
    const rec = JSON.parse((await etcd.client.get(key).string()) ?? "null") as Record<string, unknown>;
    const ifs = add.json?.["interfaces"] as Array<{ mac: string }>;
    assert.deepEqual(rec, {
      node: nodeName(),
      namespace: "ns1",
      pod: "w",
      containerId: "ctr-w",
      ifName: "eth0",
      hostIface: hostIfaceName("ns1", "w"),
      ips: [(add.json?.["ips"] as Array<{ address: string }>)[0]?.address.split("/")[0]],
      mac: ifs[1]?.mac,
    });
    const del = await node.del(pod, "ctr-w", "w", { conf });
    assert.equal(del.code, 0, del.stdout);
    assert.deepEqual(await keys(), []);
    assert.equal((await node.del(pod, "ctr-w", "w", { conf })).code, 0, "a second DEL is fine too");
  });

  test("DEL leaves a record of another container (a newer pod of the same name) alone", async () => {
    const key = workloadEndpointKey(nodeName(), "ns1", "z", "eth0", PFX);
    await etcd.client.put(key).value(JSON.stringify({ node: nodeName(), namespace: "ns1", pod: "z", containerId: "ctr-newer", ifName: "eth0", hostIface: hostIfaceName("ns1", "z"), ips: ["10.244.11.99"] }));
    const del = await node.del(node.podNs("gone"), "ctr-older", "z", { conf });
    assert.equal(del.code, 0, del.stdout);
    assert.deepEqual(await keys(), [key]);
    await etcd.client.delete().key(key);
  });

  test("GC deletes records of attachments that are not valid", async () => {
    const p1 = await node.pod("g1");
    const p2 = await node.pod("g2");
    assert.equal((await node.add(p1, "ctr-g1", "g1", { conf })).code, 0);
    assert.equal((await node.add(p2, "ctr-g2", "g2", { conf })).code, 0);
    assert.equal((await keys()).length, 2);
    const gc = await invokeCni(node.ns, { command: "GC", conf: { ...conf, "cni.dev/valid-attachments": [{ containerID: "ctr-g1", ifname: "eth0" }] } });
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    assert.deepEqual(await keys(), [workloadEndpointKey(nodeName(), "ns1", "g1", "eth0", PFX)]);
    assert.ok(!(await node.links()).includes(hostIfaceName("ns1", "g2")));
    assert.equal((await node.del(p1, "ctr-g1", "g1", { conf })).code, 0);
    assert.deepEqual(await keys(), []);
  });

  test("an unreachable etcd fails the ADD with try-again-later and rolls everything back", async () => {
    const pod = await node.pod("down");
    const before0 = { links: await node.links(), allocations: node.allocations() };
    const dead = node.conf({ etcdEndpoints: [`unix://${join(node.dir, "no-etcd.sock")}`], etcdPrefix: PFX });
    const add = await node.add(pod, "ctr-down", "down", { conf: dead });
    assert.equal(add.code, 1);
    assert.equal(add.json?.["code"], 11, add.stdout);
    assert.match(String(add.json?.["msg"]), /etcd \(unix:.*no-etcd\.sock\): writing .* failed/);
    assert.deepEqual({ links: await node.links(), allocations: node.allocations() }, before0);
    assert.deepEqual(await node.links(pod), ["lo"]);
    assert.deepEqual(await etcd.client.getAll().prefix(workloadEndpointPrefix(nodeName(), PFX)).keys(), []);
  });

  test("an unreachable etcd fails the DEL and keeps the address; the retried DEL completes it", async () => {
    const pod = await node.pod("deldown");
    const add = await node.add(pod, "ctr-deldown", "deldown", { conf });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const held = node.allocations();
    assert.equal(held.length, 1);
    const key = workloadEndpointKey(nodeName(), "ns1", "deldown", "eth0", PFX);
    const dead = node.conf({ etcdEndpoints: [`unix://${join(node.dir, "no-etcd.sock")}`], etcdPrefix: PFX });
    const del = await node.del(pod, "ctr-deldown", "deldown", { conf: dead });
    assert.equal(del.code, 1);
    assert.equal(del.json?.["code"], 11, del.stdout);
    // The record still claims the address, so the address must stay taken (a later ADD must not get it).
    assert.deepEqual(node.allocations(), held);
    assert.deepEqual(await keys(), [key]);
    const retry = await node.del(pod, "ctr-deldown", "deldown", { conf });
    assert.equal(retry.code, 0, retry.stdout + retry.stderr);
    assert.deepEqual(await keys(), []);
    assert.deepEqual(node.allocations(), []);
  });
});
