/** `sluicectl sandbox` as a user runs it: separate CLI processes sharing one sandbox through its state file. */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { podObject } from "../../src/config/k8sSchemas.js";
import { connectEtcd } from "../../src/datastore/etcdClient.js";
import { podKey } from "../../src/datastore/resourceKeys.js";
import { run } from "../../src/dataplane/exec.js";
import { teardown } from "../../src/sandbox/cluster.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { listNetns } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { leftovers } from "../helpers/cluster.js";
import { uniquePrefix } from "../helpers/netns.js";

interface Status {
  prefix: string;
  etcd: { endpoint: string; running: boolean; tls: { caFile: string; certFile: string; keyFile: string } };
  nodes: Array<{ name: string; netns: string; address: string; segment: number; subnet: string; agentPid: number | null; ready: boolean; policy: { revision: string; appliedAt: string } | null }>;
  leases: Array<{ subnet: string; node: string; publicIp: string }>;
  namespaces: Array<{ name: string; labels: Record<string, string> }>;
  pods: Array<{ pod: string; node: string; ips: string[]; netns: string; labels: Record<string, string> }>;
}

describe("sluicectl sandbox: up, pods, probes, matrix, status, labels, nodes, down", () => {
  const prefix = uniquePrefix("ec");
  const stateDir = join(tmpdir(), prefix);
  // This file's own contexts file: `sandbox up` records the sandbox there as current.
  const env = { ...process.env, SLUICE_CONFIG: join(tmpdir(), `${prefix}-sluicectl.json`) };
  const top = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => run(process.execPath, [binPath("sluicectl"), ...args], undefined, 120_000, env);
  const ctl = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => top("sandbox", "--state-dir", stateDir, ...args);
  const ok = async (...args: string[]): Promise<string> => {
    const r = await ctl(...args);
    assert.equal(r.code, 0, `sluicectl sandbox ${args.join(" ")}: exit ${r.code}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const status = async (): Promise<Status> => JSON.parse(await ok("status", "-o", "json")) as Status;

  after(async () => {
    await teardown(prefix, stateDir);
    rmSync(env.SLUICE_CONFIG, { force: true });
  });

  test("up builds a cluster and returns with it running; a second up is refused", async () => {
    const out = await ok("up", "--nodes", "2", "--prefix", prefix, "--backend", "vxlan");
    assert.match(out, /sandbox up in/);
    assert.match(out, /node-1 started: 10\.250\.1\.11, agent pid \d+ \[1\/2\][^]*node-2 started[^]*ready \[2\/2\]/, "a progress line per node as it goes");
    assert.ok(existsSync(join(stateDir, "sandbox.json")));
    const st = await status();
    assert.equal(st.etcd.running, true);
    assert.deepEqual(st.nodes.map((n) => [n.name, n.address, n.ready]), [["node-1", "10.250.1.11", true], ["node-2", "10.250.1.12", true]]);
    assert.equal(st.leases.length, 2);
    assert.deepEqual(st.namespaces.map((n) => n.name), ["default"]);
    const again = await ctl("up", "--nodes", "1", "--prefix", prefix);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already up/);
  });

  test("ns create and pod create (real CNI); a pod in a missing namespace is refused clearly", async () => {
    await ok("ns", "create", "x", "--labels", "team=x");
    assert.match(await ok("pod", "create", "x/a", "--node", "1", "--labels", "app=web"), /pod x\/a created on node-1: 10\.244\./);
    await ok("pod", "create", "x/b", "--node", "node-2", "--labels", "app=db", "--ports", "serve-80-tcp=80/TCP,serve-80-udp=80/UDP");
    const bad = await ctl("pod", "create", "nope/a", "--node", "1");
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /namespace "nope" does not exist/);
    assert.ok(!(await listNetns()).some((n) => n.includes("nope")), "nothing half-made");
    const st = await status();
    assert.deepEqual(st.pods.map((p) => [p.pod, p.node, p.labels]), [["x/a", "node-1", { app: "web" }], ["x/b", "node-2", { app: "db" }]]);
    // etcd answers only clients with the sandbox's client certificate.
    const anonymous = new Etcd3({ hosts: [st.etcd.endpoint], dialTimeout: 1000 });
    try {
      await assert.rejects(anonymous.get(podKey("x", "b")).string(), "no answer without the client certificate");
    } finally {
      anonymous.close();
    }
    // The Pod object in etcd is a valid k8s Pod with the node, labels and named ports.
    const c = connectEtcd({ endpoints: [st.etcd.endpoint], ...st.etcd.tls });
    try {
      const pod = podObject.parse(JSON.parse((await c.get(podKey("x", "b")).string()) ?? "null"));
      assert.equal(pod.spec.nodeName, "node-2");
      assert.deepEqual(pod.metadata.labels, { app: "db" });
      assert.deepEqual(pod.spec.containers.flatMap((ct) => ct.ports ?? []).map((p) => `${p.name}=${p.containerPort}/${p.protocol}`), ["serve-80-tcp=80/TCP", "serve-80-udp=80/UDP"]);
      assert.equal(pod.status?.podIP, st.pods[1]?.ips[0]);
    } finally {
      c.close();
    }
  });

  test("probe: connected exits 0, blocked exits 1; UDP counts a reply; an address works as target", async () => {
    assert.match(await ok("probe", "x/a", "x/b", "--port", "80/TCP"), /^connected: x\/a -> x\/b/);
    const refused = await ctl("probe", "x/a", "x/b", "--port", "81/TCP");
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /^blocked: .*refused/);
    const udpNone = await ctl("probe", "x/a", "x/b", "--port", "81/UDP", "--timeout", "500");
    assert.equal(udpNone.code, 1, "x/b serves no 81/UDP: no reply, blocked");
    assert.match(await ok("probe", "x/b", "x/a", "--port", "81/UDP"), /^connected/);
    const ipOfA = (await status()).pods[0]?.ips[0] as string;
    assert.match(await ok("probe", "x/b", ipOfA, "--port", "80"), new RegExp(`^connected: x/b -> ${ipOfA.replace(/\./g, "\\.")} 80/TCP`));
  });

  test("matrix -o json probes every ordered pair, self included", async () => {
    const m = JSON.parse(await ok("matrix", "-o", "json")) as { pods: string[]; matrix: Record<string, Record<string, boolean>> };
    assert.deepEqual(m.pods, ["x/a", "x/b"]);
    assert.deepEqual(m.matrix, { "x/a": { "x/a": true, "x/b": true }, "x/b": { "x/a": true, "x/b": true } });
    const m81 = JSON.parse(await ok("matrix", "--port", "81/TCP", "-o", "json", "-n", "x")) as { matrix: Record<string, Record<string, boolean>> };
    assert.deepEqual(m81.matrix, { "x/a": { "x/a": true, "x/b": false }, "x/b": { "x/a": true, "x/b": false } });
    assert.match(await ok("matrix"), /4\/4 pairs connected/);
  });

  test("ICMP: probe and matrix with --proto ICMP (echo); SCTP cannot be probed", async () => {
    assert.match(await ok("probe", "x/a", "x/b", "--proto", "ICMP"), /^connected: x\/a -> x\/b \(10\.244\.\d+\.\d+\) ICMP in \d+ ms/);
    assert.match(await ok("probe", "node-1", "x/b", "--port", "icmp"), /^connected: node-1 -> x\/b/);
    assert.match(await ok("matrix", "--proto", "icmp"), /^ICMP: rows connect to columns[^]*4\/4 pairs connected/);
    const none = await ctl("probe", "x/a", "10.244.255.254", "--proto", "ICMP", "--timeout", "400");
    assert.equal(none.code, 1, none.stdout + none.stderr);
    // SCTP is probed only where the kernel has SCTP sockets (the vm suite probes it there).
    const sctp = await ctl("probe", "x/a", "x/b", "--port", "80/SCTP");
    assert.equal(sctp.code, 2);
    assert.match(sctp.stderr, /--port: SCTP cannot be probed here: this kernel has no SCTP sockets/);
  });

  test("external add: a host outside the cluster on the underlay, reached through the node's masquerade", async () => {
    assert.match(await ok("external", "add"), /^external host ext-1 added: 203\.0\.113\.11 /);
    const st = (await status()) as Status & { externals: Array<{ name: string; address: string; netns: string }> };
    assert.deepEqual(st.externals.map((h) => [h.name, h.address, h.netns]), [["ext-1", "203.0.113.11", `${prefix}-ext-1`]]);
    assert.match(await ok("probe", "x/a", "203.0.113.11", "--port", "80/TCP"), /^connected/);
    assert.match(await ok("probe", "x/b", "203.0.113.11", "--port", "81/UDP"), /^connected/);
    assert.match(await ok("probe", "x/a", "203.0.113.11", "--proto", "ICMP"), /^connected/);
    // The host saw node-1's address, not the pod's: conntrack on node-1 has the pod as the
    // original source and the node as the reply's destination.
    const podIp = st.pods.find((p) => p.pod === "x/a")?.ips[0] as string;
    const ct = await ok("exec", "node-1", "--", "conntrack", "-L", "-p", "tcp", "-d", "203.0.113.11");
    assert.match(ct, new RegExp(`src=${podIp.replace(/\./g, "\\.")} dst=203\\.0\\.113\\.11 .*src=203\\.0\\.113\\.11 dst=10\\.250\\.1\\.11 `));
    // Its only way out is the underlay bridge.
    const routes = (await run("ip", ["-n", `${prefix}-ext-1`, "-4", "route"])).stdout.trim().split("\n").sort();
    assert.deepEqual(routes.map((r) => r.trim()), ["203.0.113.0/24 dev eth0 proto kernel scope link src 203.0.113.11", "default via 203.0.113.1 dev eth0"]);
    await ok("external", "remove", "ext-1");
    assert.ok(!(await listNetns()).includes(`${prefix}-ext-1`));
    // Hosts come and go without the nodes' view of the underlay going stale: the router keeps
    // its MAC (a bridge would take its lowest port's) and sends no redirects that teach a node
    // the host's own MAC, so a host added again at the same address answers the first probe.
    const routerMac = async (): Promise<string> => (await run("ip", ["-n", `${prefix}-underlay`, "-br", "link", "show", "br1"])).stdout.trim().split(/\s+/)[2] as string;
    const mac = await routerMac();
    for (let i = 0; i < 3; i++) {
      assert.match(await ok("external", "add"), /^external host ext-1 added: 203\.0\.113\.11 /);
      assert.equal(await routerMac(), mac);
      assert.match(await ok("probe", "x/a", "203.0.113.11", "--port", "80/TCP"), /^connected/);
      assert.match(await ok("probe", "x/b", "203.0.113.11", "--port", "80/TCP"), /^connected/);
      await ok("external", "remove", "ext-1");
    }
  });

  test("label pod / label ns (k=v sets, k- removes); exec runs in the pod; status follows the revision each agent has in force", async () => {
    const revisions = (st: Status): number[] => st.nodes.map((n) => Number(n.policy?.revision ?? NaN));
    const before = revisions(await status());
    assert.ok(before.every((r) => r > 0), `every agent reports a revision in force: ${before.join(", ")}`);
    await ok("label", "pod", "x/a", "app-", "tier=frontend");
    await ok("label", "ns", "x", "team-", "env=dev");
    // Both writes are policy data: each agent's revision moves past them once it applied them.
    let now = before;
    const moved = await eventually(async () => (now = revisions(await status())).every((r, i) => r > (before[i] as number)), 5000, 100);
    assert.ok(moved, `revisions ${before.join(", ")} -> ${now.join(", ")}`);
    assert.match(await ok("status"), /POLICY[^]*node-1 .* revision \d+/, "the table shows it too");
    const st = await status();
    assert.deepEqual(st.pods.find((p) => p.pod === "x/a")?.labels, { tier: "frontend" });
    assert.deepEqual(st.namespaces.find((n) => n.name === "x")?.labels, { env: "dev", "kubernetes.io/metadata.name": "x" });
    const ip = st.pods.find((p) => p.pod === "x/a")?.ips[0] as string;
    assert.match(await ok("exec", "x/a", "--", "ip", "-br", "addr", "show", "eth0"), new RegExp(ip.replace(/\./g, "\\.")));
    assert.match(await ok("exec", "node-1", "--", "ip", "route"), /proto 77/);
    assert.match(await ok("probe", "node-2", "x/a", "--port", "80/TCP"), /^connected: node-2 -> x\/a/);
  });

  test("node add / restart / remove (its pods and lease go with it); pod delete; ns delete refused while pods exist", async () => {
    assert.match(await ok("node", "add"), /node-3 added: 10\.250\.1\.13/);
    await ok("pod", "create", "x/c", "--node", "3");
    assert.match(await ok("probe", "x/c", "x/a"), /^connected/);
    const before = (await status()).nodes.find((n) => n.name === "node-3")?.agentPid;
    assert.match(await ok("node", "restart", "node-3"), /node-3: agent restarted/);
    const after3 = (await status()).nodes.find((n) => n.name === "node-3");
    assert.ok(after3?.ready && after3.agentPid && after3.agentPid !== before, "a new agent, ready");
    assert.match(await ok("probe", "x/c", "x/a"), /^connected/);
    assert.match(await ok("node", "remove", "3"), /node-3 removed with its pods x\/c; lease 10\.244\.\d+\.0\/24 deleted/);
    let st = await status();
    assert.deepEqual(st.nodes.map((n) => n.name), ["node-1", "node-2"]);
    assert.deepEqual(st.leases.map((l) => l.node).sort(), ["node-1", "node-2"]);
    const busy = await ctl("ns", "delete", "x");
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, /still has pods/);
    await ok("pod", "delete", "x/b");
    st = await status();
    assert.deepEqual(st.pods.map((p) => p.pod), ["x/a"]);
    assert.ok(!(await listNetns()).some((n) => n === `${prefix}-pod-x.b`));
  });

  test("pod create --count N spreads N pods over the nodes, a line each and a total; -q only the total", async () => {
    const many = await ok("pod", "create", "default/w", "--count", "3", "--labels", "app=w");
    assert.match(many, /^ {2}pod default\/w-1 created on node-\d: 10\.244\.[\d.]+ \[1\/3\]\n {2}pod default\/w-2 .*\[2\/3\]\n {2}pod default\/w-3 .*\[3\/3\]\n3 pods created \(default\/w-1 \.\.\. default\/w-3\) in /);
    assert.equal(await ok("pod", "create", "default/q", "--count", "2", "-q").then((o) => o.split("\n").filter(Boolean).length), 1);
    const st = await status();
    const made = st.pods.filter((p) => /^default\/(w|q)-\d$/.test(p.pod));
    assert.equal(made.length, 5);
    assert.deepEqual([...new Set(made.map((p) => p.node))].sort(), ["node-1", "node-2"], "spread over both nodes");
    for (const p of made) await ok("pod", "delete", p.pod);
  });

  test("the current context: up recorded the sandbox's etcd, and datastore verbs use it without flags", async () => {
    const current = await top("config", "current-context");
    assert.equal(current.stdout, `sandbox-${prefix}\n`, current.stderr);
    const got = await top("get", "ns");
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, /^x\s/m);
    assert.match(got.stderr, new RegExp(`^sluicectl: using context "sandbox-${prefix}" \\(etcd unix://`));
    const policy = join(tmpdir(), `${prefix}-np.yaml`);
    writeFileSync(policy, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ctx-check, namespace: x}\nspec: {podSelector: {}}\n");
    try {
      const applied = await top("apply", "-f", policy);
      assert.match(applied.stdout, /networkpolicy.networking.k8s.io\/ctx-check created/, applied.stderr);
      assert.match((await top("explain", "10.9.9.9", "x/a")).stdout, /isolated by x\/ctx-check/);
      assert.equal((await top("delete", "-f", policy)).code, 0);
    } finally {
      rmSync(policy, { force: true });
    }
    // A connection flag (or SLUICE_ETCD_ENDPOINTS) wins over the context, which is then not mentioned.
    const other = await top("get", "ns", "--etcd-endpoints", "http://127.0.0.1:1");
    assert.notEqual(other.code, 0);
    assert.doesNotMatch(other.stderr, /using context/);
    assert.match(other.stderr, /127\.0\.0\.1:1/);
    const listed = JSON.parse((await top("config", "get-contexts", "-o", "json")).stdout) as { currentContext: string; contexts: Array<{ name: string; sandboxStateDir: string }> };
    assert.deepEqual(listed.contexts.map((c) => [c.name, c.sandboxStateDir]), [[`sandbox-${prefix}`, stateDir]]);
  });

  test("down removes every namespace, process and file", async () => {
    assert.match(await ok("down"), /sandbox removed/);
    const none = await top("config", "current-context");
    assert.equal(none.code, 1, "down removed the sandbox's context");
    assert.match(none.stderr, /no current context/);
    assert.deepEqual(await leftovers(prefix, stateDir), []);
    assert.match(await ok("down"), /nothing to remove/);
    const st = await ctl("status");
    assert.notEqual(st.code, 0);
    assert.match(st.stderr, /no sandbox at/);
  });

  test("down cleans up after a crashed run that lost its state file", async () => {
    await ok("up", "--nodes", "1", "--prefix", prefix);
    await ok("pod", "create", "default/p", "--node", "1");
    rmSync(join(stateDir, "sandbox.json")); // as if `up` had crashed before writing it
    assert.ok((await leftovers(prefix, stateDir)).length > 0);
    const refused = await ctl("up", "--nodes", "1", "--prefix", prefix);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /already exist/);
    await ok("down", "--prefix", prefix);
    assert.deepEqual(await leftovers(prefix, stateDir), []);
  });
});
