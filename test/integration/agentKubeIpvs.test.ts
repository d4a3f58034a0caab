import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { ip, nsExec } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { type CniNode, makeCniNode, podIp } from "../helpers/cni.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { uniquePrefix } from "../helpers/netns.js";

/**
 * The agent's kube-proxy IPVS detection against a real kernel (the traffic through IPVS is
 * the vm suite's: this host's kernel has no IPVS): the IPVS path rules (src/render/kubeIpvs.ts)
 * are in the filter table exactly while a kube-ipvs0 device exists, found at start-up and by
 * the route resync, and they name the node's pod by its address.
 */
describe("kube-proxy IPVS mode: the agent follows kube-ipvs0", () => {
  const prefix = uniquePrefix("kipvs");
  let node: CniNode;
  let etcd: TestEtcd;
  let agent: ChildProcess | undefined;
  let address = "";
  const hostIface = hostIfaceName("ns1", "p1");
  const logPath = (): string => join(node.dir, "agent.log");
  const filter = (): Promise<string> => nsExec(node.ns, "iptables-save", ["-t", "filter"]);
  const ipvsRules = (text: string): string[] => text.split("\n").filter((l) => /slc-ipvs|0x80000/.test(l));
  const readyz = async (): Promise<boolean> => (await run("ip", ["netns", "exec", node.ns, "curl", "-sf", "--max-time", "1", "http://127.0.0.1:9197/readyz"])).code === 0;
  const logTail = (): string => (existsSync(logPath()) ? readFileSync(logPath(), "utf8").slice(-3000) : "");

  function startAgent(): void {
    const fd = openSync(logPath(), "a");
    agent = spawn("ip", ["netns", "exec", node.ns, process.execPath, binPath("sluice-agent"), ...etcd.flags(etcd.server.endpoints[0]), "--iface", "ext0", "--subnet-file", node.subnetFile, "--cni-data-dir", node.dataDir, "--node-name", `${prefix}-node`, "--healthz-ip", "127.0.0.1", "--healthz-port", "9197", "--route-resync", "1", "--policy-resync", "30s"], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
  }
  async function stopAgent(): Promise<void> {
    const exited = new Promise<void>((r) => agent?.once("exit", () => r()));
    agent?.kill("SIGTERM");
    await exited;
    agent = undefined;
  }

  before(async () => {
    etcd = await startTestEtcd();
    node = await makeCniNode(prefix, 38, "10.244.18.1/24");
    await etcd.client.put("/coreos.com/network/config").value(JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }));
    startAgent();
    assert.ok(await eventually(readyz, 20_000), `agent ready; log:\n${logTail()}`);
    const add = await node.add(await node.pod("p1"), "ctr-p1", "p1");
    assert.equal(add.code, 0, add.stdout + add.stderr);
    address = podIp(add);
    assert.ok(await eventually(async () => (await filter()).includes(`slc-fw-${hostIface}`), 10_000), "the pod's chains");
  });
  after(async () => {
    agent?.kill("SIGKILL");
    await node?.destroy();
    await etcd?.stop();
  });

  test("without kube-ipvs0 there is no IPVS rule", async () => {
    assert.deepEqual(ipvsRules(await filter()), []);
  });

  test("kube-ipvs0 appears: the INPUT mark, the OUTPUT dispatch and the pod's source dispatch follow within a resync", async () => {
    // kube-proxy makes a dummy device; this host's kernel has no dummy module, and the name is what counts.
    await ip("-n", node.ns, "link", "add", "kube-ipvs0", "type", "veth", "peer", "name", "kube-ipvs0-peer");
    await ip("-n", node.ns, "addr", "add", "10.96.0.10/32", "dev", "kube-ipvs0");
    assert.ok(await eventually(async () => ipvsRules(await filter()).length > 0, 10_000), `IPVS rules; log:\n${logTail()}`);
    const text = await filter();
    const chain = (name: string): string[] => text.split("\n").filter((l) => l.startsWith(`-A ${name} `));
    assert.match(chain("SLUICE-INPUT")[0] ?? "", /^-A SLUICE-INPUT (-m comment --comment "sluice:[0-9a-f]+" )?-j MARK --set-xmark 0x80000\/0x80000/, "the INPUT mark comes first");
    assert.match(chain("SLUICE-OUTPUT")[0] ?? "", /-m mark --mark 0x80000\/0x80000 .*-j slc-ipvs$/, "the OUTPUT dispatch comes before the host -> pod ACCEPT");
    assert.ok(chain("slc-ipvs-from-wl").some((l) => l.includes(`-s ${address}/32`) && l.endsWith(`-g slc-fw-${hostIface}`)), `the pod by its address:\n${chain("slc-ipvs-from-wl").join("\n")}`);
    assert.match(readFileSync(logPath(), "utf8"), /kube-proxy runs in IPVS mode/);
  });

  test("a restart with kube-ipvs0 in place keeps the rules; kube-ipvs0 gone: the rules go, the pod's chains stay", async () => {
    const before = ipvsRules(await filter());
    await stopAgent();
    startAgent();
    assert.ok(await eventually(async () => readFileSync(logPath(), "utf8").split("kube-proxy runs in IPVS mode").length > 2, 20_000), `the new agent sees kube-ipvs0; log:\n${logTail()}`);
    assert.deepEqual(ipvsRules(await filter()), before);
    await ip("-n", node.ns, "link", "del", "kube-ipvs0");
    assert.ok(await eventually(async () => ipvsRules(await filter()).length === 0, 10_000), `IPVS rules removed; log:\n${logTail()}`);
    assert.ok((await filter()).includes(`-A slc-from-wl -i ${hostIface}`));
  });
});
