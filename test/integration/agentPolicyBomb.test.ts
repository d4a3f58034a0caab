import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EtcdResourceStore } from "../../src/datastore/etcdResources.js";
import { resourceKey } from "../../src/datastore/resourceKeys.js";
import { MAX_OBJECT_BYTES, networkPolicyKind } from "../../src/config/resourceKinds.js";
import type { KubeObject } from "../../src/config/resourceKinds.js";
import { policyChainName } from "../../src/render/policy.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { nsExec } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { type CniNode, makeCniNode } from "../helpers/cni.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { uniquePrefix } from "../helpers/netns.js";

/**
 * Polls GET /healthz inside the node's namespace, one request at a time with a fresh
 * connection, ~10 ms apart, until its stdin closes; then prints the latencies it saw. A
 * request that gets no answer within 5 s counts as 5 s (and as failed).
 */
const POLLER_JS = `
const http = require("http");
const port = Number(process.argv[1]);
let stop = false;
process.stdin.on("data", () => {}).on("end", () => { stop = true; });
const once = () => new Promise((resolve) => {
  const t = performance.now();
  const done = (ok) => resolve({ ms: performance.now() - t, ok });
  const req = http.get({ host: "127.0.0.1", port, path: "/healthz", agent: false, timeout: 5000 }, (res) => { res.resume(); res.on("end", () => done(res.statusCode === 200)); });
  req.on("timeout", () => { req.destroy(); });
  req.on("error", () => done(false));
});
(async () => {
  const ms = []; let failed = 0;
  while (!stop) { const r = await once(); ms.push(r.ms); if (!r.ok) failed++; await new Promise((r) => setTimeout(r, 10)); }
  ms.sort((a, b) => a - b);
  console.log(JSON.stringify({ n: ms.length, failed, median: ms[ms.length >> 1], p99: ms[Math.floor(ms.length * 0.99)], max: ms[ms.length - 1] }));
})();
`;

interface PollResult {
  n: number;
  failed: number;
  median: number;
  p99: number;
  max: number;
}

/** A NetworkPolicy of ns1 selecting app=web, padded to `bytes` of JSON with copies of two peers and two ports. */
function bombPolicy(name: string, bytes: number): KubeObject {
  const peers = [{ podSelector: { matchLabels: { app: "client" } } }, { namespaceSelector: { matchLabels: { team: "a" } } }];
  const ports = [{ protocol: "TCP", port: 80 }, { protocol: "TCP", port: 443 }];
  const make = (copies: number): KubeObject =>
    ({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name, namespace: "ns1" },
      spec: { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Ingress"], ingress: [{ from: Array.from({ length: copies }, (_, i) => peers[i % 2]), ports: Array.from({ length: copies }, (_, i) => ports[i % 2]) }] },
    }) as KubeObject;
  // Size grows linearly with the copies: one probe gives the count.
  const per = (JSON.stringify(make(2000)).length - JSON.stringify(make(1000)).length) / 1000;
  const base = JSON.stringify(make(0)).length;
  return make(Math.floor((bytes - base) / per));
}

/**
 * Issue 11, item 2: a NetworkPolicy at the API's object-size limit, made of copies of a few
 * peers and ports, must not stall the agent: /healthz keeps answering within 100 ms while it
 * is processed (the issue's threshold: kubelet's liveness probe is what restarts a stalled
 * agent), the policy applies (deduplicated), a small policy written after it takes effect
 * in the kernel and a new pod's CNI ADD (which waits for its chains) succeeds. Without the fix the agent renders 10^8 lines for half an hour
 * (the small policy never applies) or, with only the render fixed, validates the object on
 * its event loop (/healthz then waits 250-500 ms).
 *
 * The agent and the poller run at nice -10: the threshold is about the agent's event loop,
 * and on a shared 2-core machine other tests' processes (QEMU guests, whole clusters) would
 * otherwise add their CPU queueing to what the poller measures. An idle agent under that
 * load still shows the odd answer over 100 ms; the agent's own longest stretch of work on
 * its loop while it takes this policy in is ~20-30 ms (CPU profile, planPrepare + spawn).
 */
describe("agent: a 1.5 MiB NetworkPolicy of duplicated peers and ports", () => {
  const prefix = uniquePrefix("bomb");
  const healthPort = 9197;
  let node: CniNode;
  let etcd: TestEtcd;
  let agent: ChildProcess | undefined;
  let poller: ChildProcess | undefined;
  const logPath = (): string => join(node.dir, "agent.log");
  const logTail = (): string => (existsSync(logPath()) ? readFileSync(logPath(), "utf8").slice(-4000) : "");
  const readyz = async (): Promise<boolean> => (await nsExec(node.ns, "curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", `http://127.0.0.1:${healthPort}/readyz`]).catch(() => "")) === "200";

  before(async () => {
    etcd = await startTestEtcd();
    node = await makeCniNode(prefix, 39, "10.244.19.1/24");
    await etcd.client.put("/coreos.com/network/config").value(JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }));
    const store = new EtcdResourceStore(etcd.client);
    await store.applyAll([
      { apiVersion: "v1", kind: "Namespace", metadata: { name: "ns1", labels: { team: "a" } } } as KubeObject,
      { apiVersion: "v1", kind: "Pod", metadata: { name: "p1", namespace: "ns1", labels: { app: "web" } }, spec: { nodeName: `${prefix}-node`, containers: [{ name: "c" }] } } as KubeObject,
    ]);
    const fd = openSync(logPath(), "a");
    agent = spawn("nice", ["-n", "-10", "ip", "netns", "exec", node.ns, process.execPath, binPath("sluice-agent"), ...etcd.flags(etcd.server.endpoints[0]), "--iface", "ext0", "--subnet-file", node.subnetFile, "--cni-data-dir", node.dataDir, "--node-name", `${prefix}-node`, "--healthz-ip", "127.0.0.1", "--healthz-port", String(healthPort), "--policy-resync", "30s"], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    assert.ok(await eventually(readyz, 20_000), `agent ready; log:\n${logTail()}`);
    const pod = await node.pod("p1");
    const add = await node.add(pod, "ctr-p1", "p1", { conf: node.conf({ policyReadyTimeoutMs: 10_000 }) });
    assert.equal(add.code, 0, add.stdout + add.stderr);
  });
  after(async () => {
    poller?.kill("SIGKILL");
    agent?.kill("SIGKILL");
    await node?.destroy();
    await etcd?.stop();
  });

  test("/healthz answers within 100 ms throughout, the policy applies deduplicated, a later small policy takes effect and a new pod's ADD succeeds", async (t) => {
    const bomb = bombPolicy("bomb", MAX_OBJECT_BYTES - 4096);
    const value = JSON.stringify(bomb);
    assert.ok(value.length > MAX_OBJECT_BYTES - 8192 && value.length <= MAX_OBJECT_BYTES, `policy is ${value.length} bytes`);

    const p2 = await node.pod("p2");
    poller = spawn("nice", ["-n", "-10", "ip", "netns", "exec", node.ns, process.execPath, "-e", POLLER_JS, String(healthPort)], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    poller.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => poller?.once("exit", () => r()));
    await new Promise((r) => setTimeout(r, 300)); // a few answers before, for the baseline

    // Straight into etcd, one value, as an API server would store it.
    await etcd.client.put(resourceKey(networkPolicyKind.plural, "ns1", "bomb")).value(value);
    const small: KubeObject = { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "small", namespace: "ns1" }, spec: { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ ipBlock: { cidr: "203.0.113.0/24" } }], ports: [{ port: 8443 }] }] } } as KubeObject;
    await new EtcdResourceStore(etcd.client).put(small);
    // A new pod is wired meanwhile: its ADD waits for its chains (policy-ready).
    const adding = node.add(p2, "ctr-p2", "p2", { conf: node.conf({ policyReadyTimeoutMs: 10_000 }) });

    const smallChain = policyChainName("ingress", "ns1/small");
    const bombChain = policyChainName("ingress", "ns1/bomb");
    const filter = (): Promise<string> => nsExec(node.ns, "iptables-save", ["-t", "filter"]);
    const applied = await eventually(async () => (await filter()).includes(`-A ${smallChain} `), 60_000, 100);
    const add = await adding;
    await new Promise((r) => setTimeout(r, 300)); // and a few answers after
    poller.stdin?.end();
    await exited;
    const polls = JSON.parse(out) as PollResult;
    t.diagnostic(`/healthz: ${polls.n} answers, median ${polls.median.toFixed(1)} ms, p99 ${polls.p99.toFixed(1)} ms, max ${polls.max.toFixed(1)} ms`);
    assert.ok(applied, `the small policy's chain is programmed; log:\n${logTail()}`);
    assert.equal(add.code, 0, `a new pod's ADD: ${add.stdout}${add.stderr}`);

    const rules = await filter();
    const bombLines = rules.split("\n").filter((l) => l.startsWith(`-A ${bombChain} `));
    // Two distinct peers x two distinct ports: four lines, however many copies were written.
    assert.equal(bombLines.filter((l) => l.includes("--dport")).length, 4, bombLines.join("\n"));
    assert.match(rules, new RegExp(`-A ${smallChain} -p tcp -m set --match-set \\S+ src -m tcp --dport 8443 `));
    assert.ok(polls.n >= 10, `polled ${polls.n} times`);
    assert.equal(polls.failed, 0, `every /healthz answered 200: ${out}`);
    assert.ok(polls.max < 100, `slowest /healthz answer ${polls.max.toFixed(1)} ms (median ${polls.median.toFixed(1)}, p99 ${polls.p99.toFixed(1)}, n ${polls.n})`);
  });
});
