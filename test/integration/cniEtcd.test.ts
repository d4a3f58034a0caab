import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { workloadEndpointKey, workloadEndpointPrefix } from "../../src/datastore/resourceKeys.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { binPath } from "../../src/sandbox/paths.js";
import { type CniNode, type CniReply, makeCniNode, podIp } from "../helpers/cni.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { uniquePrefix } from "../helpers/netns.js";

/**
 * etcd mode with the plugin talking to no etcd: sluice-cni writes the pod's record on the
 * node, the node's agent (with the client certificate the test etcd demands) publishes it
 * as the pod's workload endpoint and keeps the node's keys equal to the records.
 */
describe("etcd mode: sluice-cni needs no etcd; the node's agent publishes its pods", () => {
  const prefix = uniquePrefix("cnie");
  const nodeName = `${prefix}-node`;
  let node: CniNode;
  let etcd: TestEtcd;
  let agent: ChildProcess | undefined;
  const logPath = (): string => join(node.dir, "agent.log");
  const agentLog = (): string => (existsSync(logPath()) ? readFileSync(logPath(), "utf8") : "");
  const value = async (key: string): Promise<unknown> => JSON.parse((await etcd.client.get(key).string()) ?? "null");
  const nodeKeys = async (node0 = nodeName): Promise<string[]> => (await etcd.client.getAll().prefix(workloadEndpointPrefix(node0)).keys()).sort();
  const keyOf = (pod: string): string => workloadEndpointKey(nodeName, "ns1", pod, "eth0");

  before(async () => {
    etcd = await startTestEtcd();
    node = await makeCniNode(prefix, 33, "10.244.11.1/24");
    await etcd.client.put("/coreos.com/network/config").value(JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }));
    const fd = openSync(logPath(), "a");
    // The unix socket: a file, so the agent reaches it from inside the node namespace.
    agent = spawn("ip", ["netns", "exec", node.ns, process.execPath, binPath("sluice-agent"), ...etcd.flags(etcd.server.endpoints[0]), "--iface", "ext0", "--subnet-file", join(node.dir, "agent-subnet.env"), "--cni-data-dir", node.dataDir, "--node-name", nodeName, "--healthz-ip", "127.0.0.1", "--healthz-port", "9197", "--policy-resync", "1s", "--log-level", "debug"], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    const ready = async (): Promise<boolean> => (await run("ip", ["netns", "exec", node.ns, "curl", "-sf", "--max-time", "1", "http://127.0.0.1:9197/readyz"])).code === 0;
    assert.ok(await eventually(ready, 20_000), `agent ready; log:\n${agentLog().slice(-3000)}`);
  });
  after(async () => {
    agent?.kill("SIGKILL");
    try {
      if (etcd) process.kill(etcd.server.pid, "SIGCONT");
    } catch {
      // gone
    }
    await node?.destroy();
    await etcd?.stop();
  });

  test("ADD needs no etcd; the agent publishes the pod's record as its workload endpoint, and unpublishes it after DEL", async () => {
    const pod = await node.pod("w");
    const add = await node.add(pod, "ctr-w", "w");
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ifs = add.json?.["interfaces"] as Array<{ mac: string }>;
    const want = { node: nodeName, namespace: "ns1", pod: "w", containerId: "ctr-w", ifName: "eth0", hostIface: hostIfaceName("ns1", "w"), ips: [podIp(add)], mac: ifs[1]?.mac };
    assert.ok(await eventually(async () => JSON.stringify(await value(keyOf("w"))) === JSON.stringify(want), 5000, 20), `published; log:\n${agentLog().slice(-2000)}`);
    assert.equal((await node.del(pod, "ctr-w", "w")).code, 0);
    assert.ok(await eventually(async () => (await nodeKeys()).length === 0, 5000, 20), "unpublished after DEL");
  });

  test("the agent keeps the node's keys equal to its records: a stale key goes, a tampered one is repaired, another node's keys stay", async () => {
    const other = workloadEndpointKey("some-other-node", "ns1", "far", "eth0");
    await etcd.client.put(other).value(JSON.stringify({ node: "some-other-node", namespace: "ns1", pod: "far", containerId: "ctr-far", ifName: "eth0", hostIface: hostIfaceName("ns1", "far"), ips: ["10.244.99.2"] }));
    await etcd.client.put(keyOf("ghost")).value(JSON.stringify({ node: nodeName, namespace: "ns1", pod: "ghost", containerId: "ctr-ghost", ifName: "eth0", hostIface: hostIfaceName("ns1", "ghost"), ips: ["10.244.11.250"] }));
    const pod = await node.pod("k");
    const add = await node.add(pod, "ctr-k", "k");
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.ok(await eventually(async () => JSON.stringify(await nodeKeys()) === JSON.stringify([keyOf("k")]), 5000, 20), "the ghost is gone, k is there");
    const published = await etcd.client.get(keyOf("k")).string();
    await etcd.client.put(keyOf("k")).value(JSON.stringify({ ...(JSON.parse(published ?? "{}") as object), ips: ["10.244.11.251"] }));
    assert.ok(await eventually(async () => (await etcd.client.get(keyOf("k")).string()) === published, 5000, 50), "the tampered key is written back (periodic check)");
    assert.deepEqual(await etcd.client.getAll().prefix(workloadEndpointPrefix("some-other-node")).keys(), [other], "another node's endpoints are not this agent's");
    await etcd.client.delete().key(other);
    assert.equal((await node.del(pod, "ctr-k", "k")).code, 0);
    assert.ok(await eventually(async () => (await nodeKeys()).length === 0, 5000, 20));
  });

  test("a netconf written for the plugin that wrote to etcd itself still works: etcdEndpoints and etcdPrefix are ignored, with a warning", async () => {
    const pod = await node.pod("old");
    // Nothing answers there: the old plugin failed such an ADD (code 11); this one never dials.
    const conf = node.conf({ etcdEndpoints: [`unix://${join(node.dir, "no-etcd.sock")}`], etcdPrefix: "/somewhere-else" });
    const add = await node.add(pod, "ctr-old", "old", { conf });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const warning = add.stderr.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r["level"] === 40);
    assert.deepEqual(warning?.["ignored"], ["etcdEndpoints", "etcdPrefix"]);
    assert.match(String(warning?.["msg"]), /^network config: etcdEndpoints, etcdPrefix are ignored: sluice-cni no longer talks to etcd/);
    assert.ok(await eventually(async () => (await nodeKeys()).includes(keyOf("old")), 5000, 20), "published under the agent's prefix as any other pod");
    assert.deepEqual(await etcd.client.getAll().prefix("/somewhere-else/").keys(), []);
    assert.equal((await node.del(pod, "ctr-old", "old", { conf })).code, 0);
    assert.ok(await eventually(async () => (await nodeKeys()).length === 0, 5000, 20));
  });

  test("ADD and DEL do not wait for etcd: with etcd hung they complete; the agent publishes once etcd answers again", async () => {
    const pod = await node.pod("hung");
    process.kill(etcd.server.pid, "SIGSTOP");
    let add: CniReply;
    let del: CniReply;
    try {
      add = await node.add(pod, "ctr-hung", "hung");
      assert.equal(add.code, 0, add.stdout + add.stderr);
      assert.ok(add.ms < 5000, `ADD took ${Math.round(add.ms)} ms`);
    } finally {
      process.kill(etcd.server.pid, "SIGCONT");
    }
    assert.ok(await eventually(async () => (await nodeKeys()).includes(keyOf("hung")), 30_000, 100), `published after etcd came back; log:\n${agentLog().slice(-2000)}`);
    process.kill(etcd.server.pid, "SIGSTOP");
    try {
      del = await node.del(pod, "ctr-hung", "hung");
      assert.equal(del.code, 0, del.stdout + del.stderr);
    } finally {
      process.kill(etcd.server.pid, "SIGCONT");
    }
    assert.ok(await eventually(async () => (await nodeKeys()).length === 0, 30_000, 100), "unpublished after etcd came back");
    assert.deepEqual(node.allocations(), []);
  });
});
