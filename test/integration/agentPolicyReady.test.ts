import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { workloadEndpointKey } from "../../src/datastore/resourceKeys.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { policyReadyPath } from "../../src/model/localEndpoints.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { nsExec } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { type CniNode, type CniReply, makeCniNode, podIp } from "../helpers/cni.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { uniquePrefix } from "../helpers/netns.js";

/**
 * sluice-cni's policy-ready wait against the real agent (etcd mode here; Kubernetes mode
 * in test/e2e/kubeMode.test.ts): ADD returns only once the agent has the pod's chains in
 * the filter table, and fails closed when no agent answers. In etcd mode the agent
 * programs a new pod from the workload endpoint it published to etcd (the plugin talks to
 * no etcd), so every node learns of the pod from the same revision, and a pod etcd does
 * not know of stays unprogrammed.
 */
describe("policy-ready wait: sluice-cni ADD and a real agent on the node", () => {
  const prefix = uniquePrefix("prdy");
  let node: CniNode;
  let etcd: TestEtcd;
  let agent: ChildProcess | undefined;
  let conf: Record<string, unknown>;
  const logPath = (): string => join(node.dir, "agent.log");
  const readyz = async (): Promise<boolean> => (await run("ip", ["netns", "exec", node.ns, "curl", "-sf", "--max-time", "1", "http://127.0.0.1:9198/readyz"])).code === 0;

  before(async () => {
    etcd = await startTestEtcd();
    node = await makeCniNode(prefix, 37, "10.244.17.1/24");
    await etcd.client.put("/coreos.com/network/config").value(JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }));
    conf = node.conf({ policyReadyTimeoutMs: 10_000 });
    const fd = openSync(logPath(), "a");
    agent = spawn("ip", ["netns", "exec", node.ns, process.execPath, binPath("sluice-agent"), ...etcd.flags(etcd.server.endpoints[0]), "--iface", "ext0", "--subnet-file", node.subnetFile, "--cni-data-dir", node.dataDir, "--node-name", `${prefix}-node`, "--healthz-ip", "127.0.0.1", "--healthz-port", "9198", "--policy-resync", "30s", "--log-level", "debug"], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    assert.ok(await eventually(readyz, 20_000), `agent ready; log:\n${existsSync(logPath()) ? readFileSync(logPath(), "utf8").slice(-3000) : ""}`);
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

  test("ADD returns only after the agent has programmed the pod's chains with its address", async () => {
    const pod = await node.pod("p1");
    const hostIface = hostIfaceName("ns1", "p1");
    const add = await node.add(pod, "ctr-p1", "p1", { conf });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ip = podIp(add);
    // Read at once: no waiting here, the point is that ADD itself waited.
    const rules = await nsExec(node.ns, "iptables-save", ["-t", "filter"]);
    assert.match(rules, new RegExp(`-A slc-to-wl -o ${hostIface} .*-g slc-tw-${hostIface}`), "the dispatch to the pod's ingress chain");
    assert.match(rules, new RegExp(`-A slc-fw-${hostIface} .*! -s ${ip.replace(/\./g, "\\.")}/32 .*-j DROP`), "anti-spoofing with the pod's address");
    assert.deepEqual(JSON.parse(readFileSync(policyReadyPath(node.dataDir, hostIface), "utf8")), { containerId: "ctr-p1", ips: [ip] }, "the mark names the container it was programmed for");
    const published = JSON.parse((await etcd.client.get(workloadEndpointKey(`${prefix}-node`, "ns1", "p1", "eth0")).string()) ?? "null") as { containerId?: string; ips?: string[] } | null;
    assert.deepEqual([published?.containerId, published?.ips], ["ctr-p1", [ip]], "programmed from the endpoint the agent published: etcd had it before ADD returned");
    assert.ok(add.ms < 10_000, `ADD took ${Math.round(add.ms)} ms`);
    assert.equal((await node.del(pod, "ctr-p1", "p1", { conf })).code, 0);
    assert.ok(await eventually(async () => !(await nsExec(node.ns, "iptables-save", ["-t", "filter"])).includes(hostIface), 5000), "the chains go with the pod");
    assert.ok(!existsSync(policyReadyPath(node.dataDir, hostIface)));
  });

  test("while etcd does not answer, a new pod stays unprogrammed: ADD fails closed; a programmed pod keeps its chains", async () => {
    const old = await node.pod("p3");
    const first = await node.add(old, "ctr-p3", "p3", { conf });
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const oldIface = hostIfaceName("ns1", "p3");
    const pod = await node.pod("p4");
    const before0 = { links: await node.links(), allocations: node.allocations() };
    process.kill(etcd.server.pid, "SIGSTOP");
    let add: CniReply;
    let rules: string;
    try {
      add = await node.add(pod, "ctr-p4", "p4", { conf: { ...conf, policyReadyTimeoutMs: 1500 } });
      rules = await nsExec(node.ns, "iptables-save", ["-t", "filter"]);
    } finally {
      process.kill(etcd.server.pid, "SIGCONT");
    }
    assert.equal(add.json?.["code"], 11, add.stdout);
    assert.match(String(add.json?.["msg"]), /did not program the policy of ns1\/p4/);
    assert.ok(!rules.includes(hostIfaceName("ns1", "p4")), "no chains for a pod etcd does not know");
    assert.match(rules, new RegExp(`-A slc-to-wl -o ${oldIface} `), "the pod programmed before keeps its chains");
    assert.deepEqual({ links: await node.links(), allocations: node.allocations() }, before0, "nothing of p4 left");
    assert.equal((await node.del(old, "ctr-p3", "p3", { conf })).code, 0);
    const keys = async (): Promise<string[]> => etcd.client.getAll().prefix("/sluice/v1/workloadendpoints/").keys();
    assert.ok(await eventually(async () => (await keys()).length === 0, 20_000, 100), "the agent unpublishes both once etcd answers");
  });

  test("with the agent gone, ADD fails closed within the timeout and leaves nothing behind", async () => {
    const exited = new Promise((r) => agent?.once("exit", r));
    agent?.kill("SIGTERM");
    await exited;
    const pod = await node.pod("p2");
    const before0 = { links: await node.links(), allocations: node.allocations() };
    const add = await node.add(pod, "ctr-p2", "p2", { conf: { ...conf, policyReadyTimeoutMs: 1000 } });
    assert.equal(add.code, 1);
    assert.equal(add.json?.["code"], 11, add.stdout);
    assert.match(String(add.json?.["msg"]), /did not program the policy of ns1\/p2/);
    assert.deepEqual({ links: await node.links(), allocations: node.allocations() }, before0);
    const records = await etcd.client.getAll().prefix("/sluice/v1/workloadendpoints/").keys();
    assert.deepEqual(records, [], "nothing was published: the plugin writes to no etcd, and no agent ran");
  });
});
