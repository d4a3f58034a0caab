import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { ip, nsExec } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { FakeKubeApiProcess } from "../helpers/fakeKubeApi.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";

interface NodeJson {
  metadata: { name: string; annotations?: Record<string, string> };
  status?: { conditions?: Array<{ type: string; status: string }> };
}

/**
 * One agent with --kube-subnet-mgr in a namespace, the fake API server in a neighbour
 * namespace: not ready (and NetworkUnavailable untouched) until its first full sync, then
 * ready and NetworkUnavailable=False; restarted while the API server is down, it leaves
 * the dataplane as it is and stays not ready until the API server is back.
 */
describe("an agent in Kubernetes mode", () => {
  const prefix = uniquePrefix("kag");
  const ns = `${prefix}-n`;
  const apiNs = `${prefix}-api`;
  const dir = mkdtempSync(join(tmpdir(), "sluice-kag-"));
  let api: FakeKubeApiProcess | undefined;
  let agent: ChildProcess | undefined;
  const control = (): FakeKubeApiProcess["control"] => {
    if (!api) throw new Error("no API server");
    return api.control;
  };
  const logText = (): string => readFileSync(join(dir, "agent.log"), "utf8");
  const readyz = async (): Promise<{ code: string; body: string }> => {
    const r = await run("ip", ["netns", "exec", ns, "curl", "-s", "--max-time", "1", "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:9197/readyz"]);
    const lines = r.stdout.split("\n");
    return { code: lines.pop() ?? "", body: lines.join("\n") };
  };
  const node = async (): Promise<NodeJson> => (await control().get({ apiVersion: "v1", kind: "Node", name: "solo" })) as unknown as NodeJson;
  const networkUnavailable = async (): Promise<string | undefined> => (await node()).status?.conditions?.find((c) => c.type === "NetworkUnavailable")?.status;
  const startAgent = (): void => {
    const fd = openSync(join(dir, "agent.log"), "a");
    agent = spawn("ip", ["netns", "exec", ns, process.execPath, binPath("sluice-agent"), "--kube-subnet-mgr", "--kube-api-url", "http://10.96.0.1:6443", "--net-config-path", join(dir, "net-conf.json"), "--iface", "eth0", "--subnet-file", join(dir, "subnet.env"), "--cni-data-dir", join(dir, "cni"), "--healthz-ip", "127.0.0.1", "--healthz-port", "9197", "--iptables-resync", "1"], { stdio: ["ignore", fd, fd], env: { ...process.env, NODE_NAME: "solo" } });
    closeSync(fd);
  };
  const stopAgent = async (): Promise<void> => {
    const a = agent;
    if (!a || a.exitCode !== null) return;
    const exited = new Promise((r) => a.once("exit", r));
    a.kill("SIGTERM");
    await exited;
  };

  before(async () => {
    await makeNetns(ns);
    await makeNetns(apiNs);
    await ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "eth0", "netns", apiNs);
    for (const [n, addr] of [[ns, "10.96.0.2/24"], [apiNs, "10.96.0.1/24"]] as const) {
      await ip("-n", n, "addr", "add", addr, "dev", "eth0");
      await ip("-n", n, "link", "set", "eth0", "up");
    }
    api = await FakeKubeApiProcess.start({ netns: apiNs, host: "10.96.0.1", port: 6443 });
    writeFileSync(join(dir, "net-conf.json"), JSON.stringify({ Network: "10.97.0.0/16", Backend: { Type: "host-gw" } }));
    // Registered by its kubelet, no pod CIDR yet.
    await control().put({ apiVersion: "v1", kind: "Node", metadata: { name: "solo" }, spec: {}, status: { conditions: [{ type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" }] } });
    startAgent();
  });
  after(async () => {
    agent?.kill("SIGKILL");
    await api?.stop();
    await removeNetnsWithPrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  test("without a pod CIDR it waits, live but not ready, and leaves NetworkUnavailable alone", async () => {
    assert.ok(await eventually(async () => (await readyz()).code === "503", 10_000), "readyz answers");
    assert.deepEqual(JSON.parse((await readyz()).body), { ready: false, reasons: ["no live subnet lease", "iptables rules not yet in place", "subnet.env not yet written"] });
    assert.ok(await eventually(async () => /node \\"solo\\" has no IPv4 pod CIDR assigned/.test(logText()), 10_000), "says why");
    assert.equal(await networkUnavailable(), "True");
  });

  test("once the node has a pod CIDR: subnet.env from it, annotations, ready, and only then NetworkUnavailable=False", async () => {
    const cur = await node();
    await control().put({ ...(cur as unknown as Record<string, unknown>), apiVersion: "v1", kind: "Node", metadata: cur.metadata, spec: { podCIDR: "10.97.5.0/24", podCIDRs: ["10.97.5.0/24"] } });
    assert.ok(await eventually(async () => (await readyz()).code === "200", 20_000), `ready; log:\n${logText().slice(-3000)}`);
    assert.match(readFileSync(join(dir, "subnet.env"), "utf8"), /^FLANNEL_NETWORK=10\.97\.0\.0\/16\nFLANNEL_SUBNET=10\.97\.5\.1\/24\n/);
    assert.ok(await eventually(async () => (await networkUnavailable()) === "False", 5000), "NetworkUnavailable=False");
    const ann = (await node()).metadata.annotations ?? {};
    assert.equal(ann["sluice.dev/public-ip"], "10.96.0.2");
    assert.equal(ann["sluice.dev/backend-type"], "host-gw");
    assert.match(logText(), /"datastore":"kubernetes"/);
    assert.match(logText(), /node ready: lease held, rules and policy in place, subnet.env written/);
  });

  test("restarted while the API server is down, it keeps the dataplane and is not ready until the API server is back", async () => {
    await stopAgent();
    const rulesBefore = await nsExec(ns, "iptables", ["-S"]);
    assert.match(rulesBefore, /-A FORWARD .*-j SLUICE-FORWARD/);
    await control().outage();
    startAgent();
    assert.ok(await eventually(async () => (await readyz()).code === "503", 10_000));
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal((await readyz()).code, "503", "not ready without its first full sync");
    assert.equal(await nsExec(ns, "iptables", ["-S"]), rulesBefore, "rules untouched");
    assert.match(readFileSync(join(dir, "subnet.env"), "utf8"), /FLANNEL_SUBNET=10\.97\.5\.1\/24/, "subnet.env kept");
    await control().recover();
    assert.ok(await eventually(async () => (await readyz()).code === "200", 30_000), `ready after the API server is back; log:\n${logText().slice(-2000)}`);
    await stopAgent();
  });
});
