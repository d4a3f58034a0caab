import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { ip, nsExec } from "../../src/sandbox/netns.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { binPath } from "../../src/sandbox/paths.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";

/** One agent in a namespace with two candidate interfaces; the test controls etcd. */
describe("a single agent in a namespace", () => {
  const prefix = uniquePrefix("one");
  const ns = `${prefix}-n`;
  const dir = mkdtempSync(join(tmpdir(), "sluice-one-"));
  let etcd: TestEtcd;
  let agent: ChildProcess | undefined;
  const logText = (): string => readFileSync(join(dir, "agent.log"), "utf8");
  const http = async (path: string): Promise<{ code: string; body: string }> => {
    const r = await run("ip", ["netns", "exec", ns, "curl", "-s", "-o", "-", "-w", "\n%{http_code}", `http://127.0.0.1:9199${path}`]);
    const lines = r.stdout.split("\n");
    return { code: lines.pop() ?? "", body: lines.join("\n") };
  };

  before(async () => {
    etcd = await startTestEtcd();
    await makeNetns(ns);
    await makeNetns(`${prefix}-peer`);
    // eth0 carries the default route; eth1 is the one the flags must pick.
    await ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "p0", "netns", `${prefix}-peer`);
    await ip("link", "add", "eth1", "netns", ns, "type", "veth", "peer", "name", "p1", "netns", `${prefix}-peer`);
    for (const [dev, addr] of [["eth0", "10.91.0.2/24"], ["eth1", "10.92.0.2/24"]] as const) {
      await ip("-n", ns, "addr", "add", addr, "dev", dev);
      await ip("-n", ns, "link", "set", dev, "up");
    }
    await ip("-n", `${prefix}-peer`, "link", "set", "p0", "up");
    await ip("-n", `${prefix}-peer`, "link", "set", "p1", "up");
    await ip("-n", ns, "route", "add", "default", "via", "10.91.0.1");
    await ip("-n", ns, "route", "add", "198.18.0.0/15", "via", "10.92.0.1");
    await nsExec(ns, "sysctl", ["-qw", "net.ipv4.ip_forward=0"]);
    const fd = openSync(join(dir, "agent.log"), "a");
    agent = spawn("ip", ["netns", "exec", ns, process.execPath, binPath("sluice-agent"), ...etcd.flags(etcd.server.endpoints[0]), "--iface-can-reach", "198.18.5.5", "--subnet-file", join(dir, "subnet.env"), "--docker-opts-file", join(dir, "docker_opts.env"), "--healthz-ip", "127.0.0.1", "--healthz-port", "9199", "--ip-masq", "--node-name", "solo"], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
  });
  after(async () => {
    agent?.kill("SIGKILL");
    await removeNetnsWithPrefix(prefix);
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("without a network config it waits, live but not ready, and says why", async () => {
    assert.ok(await eventually(async () => (await http("/healthz")).code === "200", 10_000), "healthz answers");
    const ready = await http("/readyz");
    assert.equal(ready.code, "503");
    assert.deepEqual(JSON.parse(ready.body), { ready: false, reasons: ["no live subnet lease", "iptables rules not yet in place", "subnet.env not yet written"] });
    assert.ok(await eventually(async () => logText().includes("waiting for the network config"), 5000));
  });

  test("once the config appears it picks the interface that reaches --iface-can-reach, leases, writes its files, turns forwarding on and becomes ready", async () => {
    await etcd.client.put("/coreos.com/network/config").value(JSON.stringify({ Network: "10.93.0.0/16", Backend: { Type: "host-gw" } }));
    assert.ok(await eventually(async () => (await http("/readyz")).code === "200", 20_000), "ready");
    assert.match(logText(), /"iface":"eth1","publicIP":"10\.92\.0\.2"/);
    assert.match(logText(), /IPv4 forwarding was off; turned it on/);
    assert.equal((await nsExec(ns, "sysctl", ["-n", "net.ipv4.ip_forward"])).trim(), "1");
    const env = readFileSync(join(dir, "subnet.env"), "utf8");
    assert.match(env, /^FLANNEL_NETWORK=10\.93\.0\.0\/16\nFLANNEL_SUBNET=10\.93\.(\d+)\.1\/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n$/);
    const bip = /FLANNEL_SUBNET=(\S+)/.exec(env)?.[1];
    assert.equal(readFileSync(join(dir, "docker_opts.env"), "utf8"), `DOCKER_OPT_BIP="--bip=${bip}"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1500"\nDOCKER_OPTS=" --bip=${bip} --ip-masq=false --mtu=1500"\n`);
    const stored = JSON.parse((await etcd.client.get(`/coreos.com/network/subnets/${bip?.replace(".1/24", ".0-24")}`).string()) ?? "null") as { PublicIP: string; BackendType: string };
    assert.equal(stored.PublicIP, "10.92.0.2");
    assert.equal(stored.BackendType, "host-gw");
  });

  test("SIGTERM stops it cleanly and leaves the rules in place", async () => {
    const exited = new Promise<number | null>((r) => agent?.once("exit", (code) => r(code)));
    agent?.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.match(logText(), /stopped; dataplane left in place/);
    assert.match(await nsExec(ns, "iptables", ["-t", "nat", "-S", "POSTROUTING"]), /-j SLUICE-POSTROUTING/);
  });
});
