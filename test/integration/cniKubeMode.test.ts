import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { parseWorkloadEndpointRecord } from "../../src/config/endpointSchema.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { formatReadyMark, localEndpointPath, localEndpointsDir, policyReadyDir, policyReadyPath } from "../../src/model/localEndpoints.js";
import { type CniNode, type CniReply, invokeCni, makeCniNode, pingFrom, podIp } from "../helpers/cni.js";
import { uniquePrefix } from "../helpers/netns.js";

const errOf = (r: CniReply): { code: number; msg: string } => ({ code: r.json?.["code"] as number, msg: r.json?.["msg"] as string });
/**
 * The plugin with no etcdEndpoints (Kubernetes mode) and its files on the node. The
 * policy-ready wait with a real agent is tested in test/integration/agentPolicyReady.test.ts
 * and test/e2e/kubeMode.test.ts; here the agent's part is absent, or played by writing
 * its mark, to pin the plugin's side: what it waits for, and that a timeout undoes all.
 */
describe("sluice-cni without etcd (Kubernetes mode): local endpoint records and the policy-ready wait", () => {
  const prefix = uniquePrefix("cnik");
  let node: CniNode;
  const records = (): string[] => (existsSync(localEndpointsDir(node.dataDir)) ? readdirSync(localEndpointsDir(node.dataDir)).sort() : []);
  const state = async (): Promise<{ links: string[]; allocations: string[]; records: string[] }> => ({ links: await node.links(), allocations: node.allocations(), records: records() });

  before(async () => {
    node = await makeCniNode(prefix, 35, "10.244.13.1/24");
  });
  after(async () => {
    await node?.destroy();
  });

  test("ADD needs no etcd and writes the pod's WorkloadEndpointRecord on the node; DEL removes it", async () => {
    const pod = await node.pod("r");
    const add = await node.add(pod, "ctr-r", "r");
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const hostIface = hostIfaceName("ns1", "r");
    assert.deepEqual(records(), [`${hostIface}.json`], "one file, no temp file left");
    const parsed = parseWorkloadEndpointRecord(JSON.parse(readFileSync(localEndpointPath(node.dataDir, hostIface), "utf8")));
    assert.ok(parsed.ok, JSON.stringify(parsed));
    const ifs = add.json?.["interfaces"] as Array<{ mac: string }>;
    assert.deepEqual(parsed.record, { node: `${prefix}-node`, namespace: "ns1", pod: "r", containerId: "ctr-r", ifName: "eth0", hostIface, ips: [podIp(add)], mac: ifs[1]?.mac });
    assert.ok(await pingFrom(node.ns, podIp(add)), "wired as in etcd mode");
    assert.equal((await node.del(pod, "ctr-r", "r")).code, 0);
    assert.deepEqual(records(), []);
    assert.equal((await node.del(pod, "ctr-r", "r")).code, 0, "a second DEL is fine");
  });

  test("DEL leaves the record of a newer container of the same pod; DEL without pod names finds its record by container", async () => {
    const pod = await node.pod("n");
    assert.equal((await node.add(pod, "ctr-new", "n")).code, 0);
    assert.equal((await node.del(node.podNs("gone"), "ctr-old", "n")).code, 0);
    assert.deepEqual(records(), [`${hostIfaceName("ns1", "n")}.json`]);
    const del = await invokeCni(node.ns, { command: "DEL", containerId: "ctr-new", netns: pod, ifName: "eth0", args: "", conf: node.conf() });
    assert.equal(del.code, 0, del.stdout);
    assert.deepEqual(records(), []);
  });

  test("GC removes the records (and ready marks) of attachments that are not valid, and stale temp files", async () => {
    const p1 = await node.pod("g1");
    const p2 = await node.pod("g2");
    assert.equal((await node.add(p1, "ctr-g1", "g1")).code, 0);
    assert.equal((await node.add(p2, "ctr-g2", "g2")).code, 0);
    mkdirSync(policyReadyDir(node.dataDir), { recursive: true });
    writeFileSync(policyReadyPath(node.dataDir, hostIfaceName("ns1", "g2")), formatReadyMark("ctr-g2", ["10.244.13.9"]));
    const gc = await invokeCni(node.ns, { command: "GC", conf: { ...node.conf(), "cni.dev/valid-attachments": [{ containerID: "ctr-g1", ifname: "eth0" }] } });
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    assert.deepEqual(records(), [`${hostIfaceName("ns1", "g1")}.json`]);
    assert.ok(!existsSync(policyReadyPath(node.dataDir, hostIfaceName("ns1", "g2"))));
    assert.equal((await node.del(p1, "ctr-g1", "g1")).code, 0);
    assert.deepEqual(records(), []);
  });

  test("policyReadyTimeoutMs is validated, naming the field", async () => {
    const pod = await node.pod("v");
    const base = await state();
    for (const [value, why] of [
      ["5s", /^network config: policyReadyTimeoutMs: expected number, got string$/],
      [-1, /^network config: policyReadyTimeoutMs: must be at least 0$/],
      [1.5, /^network config: policyReadyTimeoutMs: expected an integer$/],
      [10_000_000, /^network config: policyReadyTimeoutMs: must be at most 120000$/],
    ] as const) {
      const r = await node.add(pod, "ctr-v", "v", { conf: node.conf({ policyReadyTimeoutMs: value }) });
      assert.equal(errOf(r).code, 7, r.stdout);
      assert.match(errOf(r).msg, why);
    }
    assert.deepEqual(await state(), base);
  });

  test("with policyReadyTimeoutMs and no agent, ADD fails closed after the timeout (try again later) and undoes everything", async () => {
    const pod = await node.pod("t");
    const base = await state();
    const r = await node.add(pod, "ctr-t", "t", { conf: node.conf({ policyReadyTimeoutMs: 700 }) });
    assert.equal(r.code, 1);
    assert.equal(errOf(r).code, 11, r.stdout);
    assert.match(errOf(r).msg, /did not program the policy of ns1\/t \(slc[0-9a-f]{12}, 10\.244\.13\.\d+\) within policyReadyTimeoutMs=700; the pod was unwired so that it never runs unpoliced/);
    assert.ok(r.ms >= 700, `waited ${Math.round(r.ms)} ms`);
    assert.deepEqual(await state(), base, "no veth, no address, no record");
    assert.deepEqual(await node.links(pod), ["lo"]);
  });

  test("ADD waits for a mark naming its container with exactly its addresses: its own stale mark is cleared first; other addresses or another container's mark do not count", async () => {
    const pod = await node.pod("w");
    const hostIface = hostIfaceName("ns1", "w");
    mkdirSync(policyReadyDir(node.dataDir), { recursive: true });
    // Left by an earlier, failed ADD of this container: must not count.
    writeFileSync(policyReadyPath(node.dataDir, hostIface), formatReadyMark("ctr-w", ["10.244.13.2"]));
    const adding = node.add(pod, "ctr-w", "w", { conf: node.conf({ policyReadyTimeoutMs: 10_000 }) });
    // Play the agent: once the record is there, first a mark with another address, then the right one.
    let record: { ips: string[] } | undefined;
    for (let i = 0; i < 200 && !record; i++) {
      await new Promise((res) => setTimeout(res, 25));
      try {
        record = JSON.parse(readFileSync(localEndpointPath(node.dataDir, hostIface), "utf8")) as { ips: string[] };
      } catch {
        record = undefined;
      }
    }
    assert.ok(record, "the record appears while ADD waits");
    assert.ok(!existsSync(policyReadyPath(node.dataDir, hostIface)), "the stale mark was cleared");
    let settled = false;
    void adding.then(() => (settled = true));
    writeFileSync(policyReadyPath(node.dataDir, hostIface), formatReadyMark("ctr-w", ["10.244.13.250"]));
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(settled, false, "a mark with other addresses does not end the wait");
    // The chains of an earlier container of this pod, programmed with the very same address.
    writeFileSync(policyReadyPath(node.dataDir, hostIface), formatReadyMark("ctr-earlier", record.ips));
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(settled, false, "a mark naming another container does not end the wait");
    writeFileSync(policyReadyPath(node.dataDir, hostIface), formatReadyMark("ctr-w", record.ips));
    const r = await adding;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(podIp(r), record.ips[0]);
    assert.equal((await node.del(pod, "ctr-w", "w")).code, 0);
    assert.ok(!existsSync(policyReadyPath(node.dataDir, hostIface)), "DEL removes the mark naming its container with the record");
  });
});
