/**
 * Pod-to-pod TCP throughput across two nodes, per backend (vxlan, host-gw, wireguard), with iperf3
 * (Debian's), against baselines built in the same run on the same kernel:
 *
 * - underlay:   iperf3 between the two node namespaces over their veths and the underlay
 *               bridge, no pods (the ceiling of the machine);
 * - hand:       the pod path wired by hand, exactly as sluice-cni and the agent wire it
 *               (veth with proxy ARP and the link-local gateway, /32 routes, strict
 *               rp_filter; a vxlan device with static neighbour and FDB entries, a
 *               host-gw route, or a WireGuard device with one peer, from the same
 *               wireguard-go (or kernel WireGuard) the agents get), with no packet-filter rule at all;
 *   hand+ct:    that path with one conntrack rule per node (`-m conntrack --ctstate
 *               RELATED,ESTABLISHED -j ACCEPT` in FORWARD): the price of stateful
 *               filtering alone, the baseline Sluice is judged against;
 * - sluice:     a sandbox cluster (real etcd, real agents, pods ADDed by sluice-cni,
 *               Docker's FORWARD DROP in place), with the agents' production resync
 *               intervals; the server pod is isolated by a NetworkPolicy that admits the
 *               client on 5201, so its traffic takes the policy path;
 *   sluice-nft: the same cluster shape with the agents on the native nftables dataplane
 *               (`--dataplane nftables`), measured in the same rounds (`--dataplanes`);
 *   sluice+1k:  the same after 1,000 NetworkPolicies are enforced: 798 of the synthetic
 *               cluster policyScale uses (over 2,000 pods on other nodes), 200 more that
 *               select the server (namespace/pod selectors and ipBlocks, a port each), and
 *               the two above; the server's first packets walk all of them.
 *
 * Each round runs every path once, in an order rotated per round, so drift of the
 * machine (another process, thermal state) spreads over all paths alike. A figure is the
 * median over the rounds of iperf3's received rate (one stream, `-t` seconds after a
 * one-second omitted warm-up). Ratios: sluice / hand+ct (target ≥ 0.95), sluice+1k /
 * sluice (target ≥ 0.98). Prints figures; asserts nothing.
 *
 * Run: npm run build && node build/bench/throughput.js [--seconds 3] [--rounds 5] [--backends vxlan,host-gw,wireguard] [--dataplanes iptables,nftables]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import type { KubeObject } from "../src/config/resourceKinds.js";
import type { NetworkPolicyObject } from "../src/config/k8sSchemas.js";
import { parseWorkloadEndpointRecord } from "../src/config/endpointSchema.js";
import { EtcdResourceStore } from "../src/datastore/etcdResources.js";
import { workloadEndpointKey } from "../src/datastore/resourceKeys.js";
import { publishedValue } from "../src/datastore/etcdEndpointPublisher.js";
import { run } from "../src/dataplane/exec.js";
import { GATEWAY_V4, HOST_VETH_MAC } from "../src/cni/wiring.js";
import { SANDBOX_POLICY_READY_TIMEOUT_MS, Sandbox, teardown } from "../src/sandbox/cluster.js";
import { eventually, tcpProbe } from "../src/sandbox/endpoints.js";
import { addNetns, delNetns, ip, listNetns, netnsPids, nsExec } from "../src/sandbox/netns.js";
import { createNamespace, createPod } from "../src/sandbox/pods.js";
import { parseNftTable } from "../src/dataplane/nftPlan.js";
import { countIpsets, countRules, median, nsSh, sleep } from "./lib/nsTools.js";
import { synthCluster } from "./lib/synthCluster.js";

const BACKENDS = ["vxlan", "host-gw", "wireguard"] as const;
type Backend = (typeof BACKENDS)[number];
/** The pod MTU each backend gives on a 1500-byte underlay. */
const POD_MTU: Record<Backend, number> = { vxlan: 1450, "host-gw": 1500, wireguard: 1420 };
type Dataplane = "iptables" | "nftables";
/** A dataplane's path names: `sluice` (iptables, as before) and `sluice-nft`. */
const pathName = (d: Dataplane): string => (d === "iptables" ? "sluice" : "sluice-nft");
const IPERF_PORT = 5201;
/** The agents' own defaults (the sandbox polls every second, which would tax every path measured here). */
const PRODUCTION_RESYNC = ["--iptables-resync", "5", "--route-resync", "10", "--policy-resync", "60"];

interface Path {
  name: string;
  clientNs: string;
  serverNs: string;
  serverIp: string;
}

const log = (line: string): void => console.log(`# ${line}`);

// ---------------------------------------------------------------- iperf3

async function startIperfServer(ns: string): Promise<void> {
  await nsExec(ns, "iperf3", ["-s", "-D", "-p", String(IPERF_PORT), "-B", "0.0.0.0"]);
  // -D returns before the socket listens.
  for (let i = 0; i < 50; i++) {
    if ((await nsExec(ns, "ss", ["-Hltn", `sport = :${IPERF_PORT}`])).trim()) return;
    await sleep(100);
  }
  throw new Error(`iperf3 -s in ${ns} is not listening on ${IPERF_PORT}`);
}

/** Gbit/s received over one stream. */
async function iperf(p: Path, seconds: number): Promise<number> {
  // Client on CPU 0, server on CPU 1 where there are two: a stream whose ends migrate
  // between cores varies by ±10 % from run to run, which would drown what is measured.
  const pin = cpus().length >= 2 ? ["-A", "0,1"] : [];
  const r = await run("ip", ["netns", "exec", p.clientNs, "iperf3", "-c", p.serverIp, "-p", String(IPERF_PORT), "-t", String(seconds), "-O", "1", "-J", ...pin], undefined, (seconds + 30) * 1000);
  if (r.code !== 0) throw new Error(`iperf3 over ${p.name} failed (exit ${r.code}): ${r.stdout.slice(0, 400)} ${r.stderr.trim()}`);
  const j = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
  const bps = j.end?.sum_received?.bits_per_second;
  if (typeof bps !== "number") throw new Error(`iperf3 over ${p.name} printed no received rate${j.error ? `: ${j.error}` : ""}`);
  return bps / 1e9;
}

// ---------------------------------------------------------------- the hand-wired paths

/**
 * Two nodes on an underlay bridge, one pod on each, wired as sluice-cni and the agent
 * wire them but by hand. `conntrack`: one stateful rule in each node's FORWARD.
 */
async function handWired(prefix: string, backend: Backend, conntrack: boolean): Promise<{ pod: Path; underlay: Path }> {
  const u = `${prefix}u`;
  const node = (i: number): string => `${prefix}n${i}`;
  const pod = (i: number): string => `${prefix}p${i}`;
  const under = (i: number): string => `10.251.0.${10 + i}`;
  const podNet = (i: number): string => `10.252.${i}`;
  const mtu = POD_MTU[backend];
  await addNetns(u);
  await ip("-n", u, "link", "add", "br0", "type", "bridge");
  await ip("-n", u, "addr", "add", "10.251.0.1/24", "dev", "br0");
  await ip("-n", u, "link", "set", "br0", "up");
  for (const i of [1, 2]) {
    await addNetns(node(i));
    await addNetns(pod(i));
    await ip("link", "add", "eth0", "netns", node(i), "type", "veth", "peer", "name", `n${i}`, "netns", u);
    await ip("-n", u, "link", "set", `n${i}`, "master", "br0", "up");
    await ip("-n", node(i), "addr", "add", `${under(i)}/24`, "dev", "eth0");
    await ip("-n", node(i), "link", "set", "eth0", "up");
    // As a sandbox node has it; proxy ARP answers for the gateway only where the node has a route to it.
    await ip("-n", node(i), "route", "add", "default", "via", "10.251.0.1");
    await nsExec(node(i), "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    // The pod: a veth whose host end answers for the link-local gateway by proxy ARP.
    await ip("link", "add", "eth0", "netns", pod(i), "mtu", String(mtu), "type", "veth", "peer", "name", "cali0", "netns", node(i), "address", HOST_VETH_MAC, "mtu", String(mtu));
    await nsExec(node(i), "sysctl", ["-qw", "net.ipv4.conf.cali0.proxy_arp=1", "net.ipv4.conf.cali0.rp_filter=1"]);
    await ip("-n", node(i), "link", "set", "cali0", "up");
    await ip("-n", pod(i), "addr", "add", `${podNet(i)}.2/32`, "dev", "eth0");
    await ip("-n", pod(i), "link", "set", "eth0", "up");
    await ip("-n", pod(i), "link", "set", "lo", "up");
    await ip("-n", pod(i), "route", "add", GATEWAY_V4, "dev", "eth0", "scope", "link");
    await ip("-n", pod(i), "route", "add", "default", "via", GATEWAY_V4, "dev", "eth0");
    await ip("-n", node(i), "route", "add", `${podNet(i)}.2/32`, "dev", "cali0");
  }
  const mac = (i: number): string => `02:00:00:00:0${i}:01`;
  const keys = backend === "wireguard" ? [await wgKeys(), await wgKeys()] : [];
  for (const [i, peer] of [[1, 2], [2, 1]] as const) {
    if (backend === "vxlan") {
      // As the agent makes it: flannel's port, no learning, the underlay as its link.
      await ip("-n", node(i), "link", "add", "vx0", "address", mac(i), "mtu", "1450", "type", "vxlan", "id", "1", "local", under(i), "dev", "eth0", "dstport", "8472", "nolearning");
      await ip("-n", node(i), "addr", "add", `${podNet(i)}.0/32`, "dev", "vx0");
      await ip("-n", node(i), "link", "set", "vx0", "up");
      await ip("-n", node(i), "neigh", "add", `${podNet(peer)}.0`, "lladdr", mac(peer), "dev", "vx0", "nud", "permanent");
      await nsExec(node(i), "bridge", ["fdb", "append", mac(peer), "dev", "vx0", "dst", under(peer)]);
      await ip("-n", node(i), "route", "add", `${podNet(peer)}.0/24`, "via", `${podNet(peer)}.0`, "dev", "vx0", "onlink");
    } else if (backend === "wireguard") {
      await handWireguard(node(i), `wg${conntrack ? "c" : "b"}${process.pid % 1000}x${i}`, keys[i - 1] as WgKeys, (keys[peer - 1] as WgKeys).pub, { self: podNet(i), peer: podNet(peer), peerAddress: under(peer) });
    } else {
      await ip("-n", node(i), "route", "add", `${podNet(peer)}.0/24`, "via", under(peer), "dev", "eth0");
    }
    if (conntrack) await nsExec(node(i), "iptables", ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]);
  }
  await startIperfServer(pod(2));
  await startIperfServer(node(2));
  const tag = conntrack ? "hand+ct" : "hand";
  return {
    pod: { name: tag, clientNs: pod(1), serverNs: pod(2), serverIp: `${podNet(2)}.2` },
    underlay: { name: "underlay", clientNs: node(1), serverNs: node(2), serverIp: under(2) },
  };
}

interface WgKeys {
  priv: string;
  pub: string;
}

async function wgKeys(): Promise<WgKeys> {
  const priv = (await run("wg", ["genkey"])).stdout.trim();
  return { priv, pub: (await run("wg", ["pubkey"], priv)).stdout.trim() };
}

/**
 * WireGuard by hand, as the agent makes it where the kernel has none: wireguard-go's
 * device (a name of its own: its control socket is global), the key, port 51820, one peer
 * with AllowedIPs its pod subnet, the subnet's network address, MTU 1420, a route per peer.
 */
async function handWireguard(ns: string, dev: string, own: WgKeys, peerPub: string, o: { self: string; peer: string; peerAddress: string }): Promise<void> {
  const started = await run("ip", ["netns", "exec", ns, "wireguard-go", dev], undefined, 30_000, { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1" });
  if (started.code !== 0) throw new Error(`wireguard-go ${dev}: ${started.stderr}`);
  const keyFile = join(mkdtempSync(join(tmpdir(), "sluice-bench-wg-")), "key");
  writeFileSync(keyFile, own.priv, { mode: 0o600 });
  const set = await run("ip", ["netns", "exec", ns, "wg", "set", dev, "private-key", keyFile, "listen-port", "51820", "peer", peerPub, "endpoint", `${o.peerAddress}:51820`, "allowed-ips", `${o.peer}.0/24`]);
  rmSync(dirname(keyFile), { recursive: true, force: true });
  if (set.code !== 0) throw new Error(`wg set ${dev}: ${set.stderr}`);
  await ip("-n", ns, "addr", "add", `${o.self}.0/32`, "dev", dev);
  await ip("-n", ns, "link", "set", dev, "mtu", "1420", "up");
  await ip("-n", ns, "route", "add", `${o.peer}.0/24`, "dev", dev);
}

async function removeNamespaces(prefix: string): Promise<void> {
  for (const ns of (await listNetns()).filter((n) => n.startsWith(prefix))) {
    for (const pid of await netnsPids(ns)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await delNetns(ns);
  }
}

// ---------------------------------------------------------------- the sluice cluster

/** The bench namespace's own two policies: the server (only) is isolated and admits the client on 5201 only. */
function benchPolicies(): NetworkPolicyObject[] {
  const meta = (name: string): NetworkPolicyObject["metadata"] => ({ name, namespace: "bench" });
  return [
    { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: meta("server-deny"), spec: { podSelector: { matchLabels: { role: "server" } }, policyTypes: ["Ingress"] } },
    {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: meta("iperf-from-client"),
      spec: { podSelector: { matchLabels: { role: "server" } }, policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { role: "client" } } }], ports: [{ protocol: "TCP", port: IPERF_PORT }] }] },
    },
  ] as NetworkPolicyObject[];
}

async function sluiceCluster(sb: Sandbox): Promise<Path> {
  await sb.up();
  await sb.waitAllReady();
  await createNamespace(sb, "bench", { team: "bench" });
  const ports = [{ name: "http", containerPort: 80, protocol: "TCP" as const }];
  const client = await createPod(sb, { namespace: "bench", name: "client", node: 1, labels: { role: "client" }, ports });
  const server = await createPod(sb, { namespace: "bench", name: "server", node: 2, labels: { role: "server" }, ports });
  await startIperfServer(server.netns);
  const serverIp = server.ips[0] as string;
  // The server's own policies, and proof that they are enforced: port 80 closes, 5201 stays open.
  const c = sb.etcdClient();
  try {
    await new EtcdResourceStore(c).applyAll(benchPolicies());
  } finally {
    c.close();
  }
  if (!(await eventually(async () => !(await tcpProbe({ ns: client.netns }, serverIp, 80, 500)), 30_000))) throw new Error("the server's default deny was not enforced within 30 s");
  return { name: "sluice", clientNs: client.netns, serverNs: server.netns, serverIp };
}

/** Our rules (filter and raw; nftables: our table) and sets in a node's namespace. */
async function kernelCounts(ns: string, dataplane: Dataplane): Promise<{ rules: number; sets: number; members: number }> {
  if (dataplane === "nftables") {
    const t = parseNftTable(await nsSh(ns, "nft -j list table ip sluice"), 4);
    return { rules: t.chains.reduce((n, c) => n + c.rules.length, 0), sets: t.sets.length, members: t.sets.reduce((n, x) => n + x.elements.length, 0) };
  }
  const filter = countRules(await nsSh(ns, "iptables-save -t filter"));
  const raw = countRules(await nsSh(ns, "iptables-save -t raw"));
  const sets = countIpsets(await nsSh(ns, "ipset save"));
  return { rules: filter.rules + raw.rules, sets: sets.sets, members: sets.members };
}

/**
 * The server's peers as a busy cluster would have them: `n` more policies that select the
 * server, each admitting one app of one team's namespaces (or an ipBlock with an except)
 * on a port of its own, so that node-2 holds their sets, filled with the synthetic pods.
 */
function serverPolicies(n: number, teams: readonly string[], apps: readonly string[]): NetworkPolicyObject[] {
  return Array.from({ length: n }, (_, i) => {
    const from = i % 10 === 9 ? [{ ipBlock: { cidr: `10.246.${i % 8}.0/24`, except: [`10.246.${i % 8}.0/28`] } }] : [{ namespaceSelector: { matchLabels: { team: teams[i % teams.length] as string } }, podSelector: { matchLabels: { app: apps[i % apps.length] as string } } }];
    return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: `server-peer-${i}`, namespace: "bench" }, spec: { podSelector: { matchLabels: { role: "server" } }, policyTypes: ["Ingress"], ingress: [{ from, ports: [{ protocol: "TCP", port: 10_000 + i }] }] } } as NetworkPolicyObject;
  });
}

/**
 * 1,000 NetworkPolicies in all: 798 of the synthetic cluster (over 2,000 pods on nodes
 * that are not in the sandbox), 200 more that select the server, the server's own two, and
 * waits until they are in the kernel. An agent renders only policies that select its own
 * pods, so the 200 are what puts a busy node's sets and chains on the server's path.
 */
async function installThousandPolicies(sb: Sandbox, path: Path, dataplane: Dataplane): Promise<{ rules: number; sets: number; members: number; ms: number }> {
  const synth = synthCluster({ namespaces: 40, pods: 2000, localPods: 0, policies: 798, remoteNodes: 8, localNode: "synth-0", localSubnet: "10.246.0.0/24", remoteSubnet: (k) => `10.246.${k}.0/24`, seed: 7 });
  // Its nodes are called node-<k>, which the sandbox's nodes are: rename them out of the way.
  const rename = (n: string): string => n.replace(/^node-/, "synth-");
  for (const p of synth.pods) p.spec.nodeName = rename(p.spec.nodeName ?? "");
  const teams = [...new Set(synth.namespaces.map((n) => n.metadata.labels?.["team"]).filter((t): t is string => t !== undefined))];
  const apps = [...new Set(synth.pods.map((p) => p.metadata.labels?.["app"]).filter((a): a is string => a !== undefined))];
  const extra = serverPolicies(200, teams, apps);
  const c = sb.etcdClient();
  const t0 = performance.now();
  const node2 = sb.nodeByName("2").ns;
  const before = await kernelCounts(node2, dataplane);
  try {
    const store = new EtcdResourceStore(c);
    const objects: KubeObject[] = [...synth.namespaces, ...synth.pods, ...synth.policies, ...extra];
    for (let i = 0; i < objects.length; i += 128) await store.applyAll(objects.slice(i, i + 128));
    for (let i = 0; i < synth.endpoints.length; i += 128) {
      const puts = synth.endpoints.slice(i, i + 128).map((r) => {
        const rec = { ...r, node: rename(r.node) };
        const v = parseWorkloadEndpointRecord(rec);
        if (!v.ok) throw new Error(`synthetic endpoint ${r.namespace}/${r.pod} is invalid: ${v.reason}`);
        return { request_put: { key: Buffer.from(workloadEndpointKey(rec.node, rec.namespace, rec.pod, rec.ifName)), value: Buffer.from(publishedValue(v.record, rec.node)) } };
      });
      await c.kv.txn({ compare: [], success: puts, failure: [] });
    }
    // A last policy, written after all the others: once it is enforced, so is everything
    // before it (an agent renders whole snapshots, in watch order). It closes the client's
    // port 80 the other way round (client isolated for ingress from the server).
    await store.applyAll([{ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "zz-last", namespace: "bench" }, spec: { podSelector: { matchLabels: { role: "client" } }, policyTypes: ["Ingress"] } } as NetworkPolicyObject]);
  } finally {
    c.close();
  }
  const serverNs = path.serverNs;
  const clientIp = (await nsSh(path.clientNs, "ip -4 -o addr show dev eth0")).match(/inet (\S+)\//)?.[1];
  if (!clientIp) throw new Error("cannot read the client pod's address");
  if (!(await eventually(async () => !(await tcpProbe({ ns: serverNs }, clientIp, 80, 500)), 120_000, 500))) throw new Error("the 1,000th policy was not enforced within 120 s");
  const ms = performance.now() - t0;
  const after = await kernelCounts(node2, dataplane);
  if (after.sets <= before.sets) throw new Error(`node-2 has ${after.sets} sets after 1,000 policies (${before.sets} before): they did not land`);
  return { ...after, ms };
}

// ---------------------------------------------------------------- main

async function rounds(paths: readonly Path[], n: number, seconds: number): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>(paths.map((p) => [p.name, []]));
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < paths.length; k++) {
      const p = paths[(k + r) % paths.length] as Path;
      out.get(p.name)?.push(await iperf(p, seconds));
    }
  }
  return out;
}

async function benchBackend(backend: Backend, o: { seconds: number; rounds: number; dataplanes: readonly Dataplane[] }): Promise<Array<[string, number[]]>> {
  const id = `${process.pid.toString(36)}${backend === "vxlan" ? "v" : backend === "host-gw" ? "g" : "w"}`;
  const hand = `slttp${id}h-`;
  const handCt = `slttp${id}c-`;
  // One two-node sandbox per dataplane, side by side, measured in the same rounds.
  const clusters = o.dataplanes.map((dataplane) => {
    const prefix = `slttp${id}${dataplane === "iptables" ? "i" : "n"}`;
    const stateDir = mkdtempSync(join(tmpdir(), `sluice-bench-tp-${backend}-${dataplane}-`));
    const sb = new Sandbox({ prefix, stateDir, nodes: 2, backend, segments: 1, agentArgs: [...PRODUCTION_RESYNC, "--dataplane", dataplane], policyReadyTimeoutMs: SANDBOX_POLICY_READY_TIMEOUT_MS });
    return { dataplane, prefix, stateDir, sb };
  });
  try {
    log(`${backend}: wiring the baselines and a two-node sandbox cluster per dataplane (${o.dataplanes.join(", ")})`);
    const bare = await handWired(hand, backend, false);
    const ct = await handWired(handCt, backend, true);
    const sluice: Path[] = [];
    for (const c of clusters) sluice.push({ ...(await sluiceCluster(c.sb)), name: pathName(c.dataplane) });
    await sleep(2000);
    const first = await rounds([bare.underlay, bare.pod, ct.pod, ...sluice], o.rounds, o.seconds);
    const loadedPaths: Path[] = [ct.pod];
    for (const [i, c] of clusters.entries()) {
      log(`${backend}: installing 1,000 NetworkPolicies (${c.dataplane})`);
      const k = await installThousandPolicies(c.sb, sluice[i] as Path, c.dataplane);
      log(`${backend}: 1,000 policies enforced after ${(k.ms / 1000).toFixed(1)} s (${c.dataplane}); node-2 holds ${k.rules} rules and ${k.sets} sets of ${k.members} members`);
      loadedPaths.push({ ...(sluice[i] as Path), name: `${pathName(c.dataplane)}+1k` });
    }
    await sleep(2000);
    const loaded = await rounds(loadedPaths, o.rounds, o.seconds);
    return [...first.entries(), ["hand+ct (2nd)", loaded.get("hand+ct") ?? []], ...loadedPaths.slice(1).map((p): [string, number[]] => [p.name, loaded.get(p.name) ?? []])];
  } finally {
    for (const c of clusters) {
      await c.sb.down().catch((err: unknown) => console.error(`sandbox teardown: ${String(err)}`));
      await teardown(c.prefix, c.stateDir).catch(() => undefined);
    }
    await removeNamespaces(hand);
    await removeNamespaces(handCt);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: "string", default: "3" }, rounds: { type: "string", default: "5" }, backends: { type: "string", default: "vxlan,host-gw" }, dataplanes: { type: "string", default: "iptables,nftables" } } });
  const dataplanes = values.dataplanes.split(",") as Dataplane[];
  for (const d of dataplanes) if (d !== "iptables" && d !== "nftables") throw new Error(`--dataplanes: "${d}" is not iptables or nftables`);
  const seconds = Number(values.seconds);
  const roundsN = Number(values.rounds);
  const backends = values.backends.split(",") as Backend[];
  if (!Number.isInteger(seconds) || seconds < 1) throw new Error(`--seconds: expected a whole number of seconds ≥ 1, got ${values.seconds}`);
  if (!Number.isInteger(roundsN) || roundsN < 1) throw new Error(`--rounds: expected a whole number ≥ 1, got ${values.rounds}`);
  for (const b of backends) if (!(BACKENDS as readonly string[]).includes(b)) throw new Error(`--backends: "${b}" is not one of ${BACKENDS.join(", ")}`);
  if ((await run("iperf3", ["--version"])).code !== 0) throw new Error("iperf3 is not installed (apt-get install -y iperf3; scripts/setup.sh installs it)");
  const cpu = cpus();
  console.log(`pod-to-pod TCP throughput, one iperf3 stream, ${roundsN} rounds × ${seconds} s per path (${cpu.length} × ${cpu[0]?.model ?? "cpu"}, load ${loadavg()[0]?.toFixed(2)}, node ${process.version})`);
  for (const backend of backends) {
    const series = await benchBackend(backend, { seconds, rounds: roundsN, dataplanes });
    const med = new Map(series.map(([name, xs]) => [name, median(xs)]));
    console.log(`\n${backend}`);
    console.log(`${"path".padEnd(16)} ${"n".padStart(3)} ${"median Gbit/s".padStart(14)} ${"min".padStart(7)} ${"max".padStart(7)}`);
    for (const [name, xs] of series) console.log(`${name.padEnd(16)} ${String(xs.length).padStart(3)} ${(med.get(name) ?? NaN).toFixed(2).padStart(14)} ${Math.min(...xs).toFixed(2).padStart(7)} ${Math.max(...xs).toFixed(2).padStart(7)}`);
    const ratio = (a: string, b: string): string => ((med.get(a) ?? NaN) / (med.get(b) ?? NaN)).toFixed(3);
    for (const d of dataplanes) {
      const n = pathName(d);
      console.log(`${`${n} / hand+ct`.padEnd(22)} ${ratio(n, "hand+ct")}  (target ≥ ${backend === "wireguard" ? "0.90" : d === "iptables" ? "0.95" : "0.97"})`);
      console.log(`${`${n}+1k / ${n}`.padEnd(22)} ${ratio(`${n}+1k`, n)}  (target ≥ 0.98; against the 2nd hand+ct: ${ratio(`${n}+1k`, "hand+ct (2nd)")})`);
    }
    console.log(`hand+ct / hand        ${ratio("hand+ct", "hand")}  (what one conntrack rule costs)`);
    console.log(`hand / underlay       ${ratio("hand", "underlay")}  (what the pod path and ${backend === "vxlan" ? "encapsulation" : backend === "wireguard" ? "encryption (wireguard-go here)" : "routing"} cost)`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
