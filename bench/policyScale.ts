/**
 * Policy scale benchmark (real parts only; run as root):
 *
 *   node build/bench/policyScale.js [--pods 5000] [--local 500] [--policies 1000]
 *        [--namespaces 50] [--changes 10] [--local-changes 6] [--modes nft,legacy,nftables]
 *        [--quiet 12] [--seed 42] [--policy-changes 10] [--pod-changes 6] [--churn 200]
 *        [--agent-arg=--route-resync=60s ...]
 *
 * A test etcd is filled (through EtcdResourceStore, 128 writes per transaction) with a
 * synthetic cluster: namespaces, pods, workload endpoint records (`--local` of them on the
 * bench node, the rest on 9 other nodes) and NetworkPolicies of mixed shapes. Then, per
 * mode (the iptables dataplane on iptables-nft, on iptables-legacy, and the native
 * nftables dataplane), the bundled agent (dist/bin/sluice-agent.js) starts in a fresh
 * network namespace with a veth underlay, and the benchmark measures:
 *
 * - time from spawn to first full program (the agent's "host rules and policy in place"
 *   log record), with the stages in between from its own log;
 * - rule, chain, ipset and member counts in the kernel, checked against the pure render;
 * - agent RSS (VmRSS, VmHWM of the node process);
 * - label change -> dataplane latency: a remote pod's labels change so that it moves in or
 *   out of several peer sets (poll `ipset test` inside the namespace every ~5 ms), and a
 *   local pod's labels change so that another policy selects it (poll its slc-tw chain);
 * - a policy created and deleted -> its chain in (out of) a local pod's slc-tw chain;
 * - a new local pod (Pod object + endpoint record) -> its slc-tw chain exists, and gone again;
 * - the real sluice-cni ADD of a new pod with policyReadyTimeoutMs (it returns once the agent
 *   has marked the pod policy-ready), paired with the same ADD without the wait;
 * - agent RSS over `--churn` consecutive remote label changes, sampled every tenth;
 * - the agent's CPU and kernel reads (iptables-save, ipset list) while nothing changes;
 * - baselines in the same run: `ipset restore` + `iptables-restore` of the agent's final
 *   state into an empty namespace (nftables: a bare `nft -f` of the same final table);
 *   `iptables-save` and `ipset list` alone (nftables: `nft -j list table`); and the
 *   agent's own apply code (PolicyDataplane / NftablesDataplane) replayed as a no-op
 *   against the agent's namespace, phase by phase.
 *
 * Pollers see the kernel as each dataplane keeps it: `ipset test` / `iptables -S <chain>`,
 * or `nft get element` / `nft list chain`.
 *
 * It prints figures and never asserts timings. The machine's load average is printed too:
 * on a shared 2-core machine, other work moves every figure. Everything it creates (namespaces, the
 * agent, pollers, etcd, the temp dir) is removed on exit, on failure and on SIGINT/SIGTERM.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { pino } from "pino";
import { type KubeObject, networkPolicyKind, podKind } from "../src/config/resourceKinds.js";
import { parseWorkloadEndpointRecord } from "../src/config/endpointSchema.js";
import { connectEtcd } from "../src/datastore/etcdClient.js";
import { EtcdResourceStore } from "../src/datastore/etcdResources.js";
import { PolicySource, type PolicySnapshot } from "../src/datastore/policySource.js";
import { podKey, workloadEndpointKey } from "../src/datastore/resourceKeys.js";
import { run } from "../src/dataplane/exec.js";
import { type IptablesMode, binaries } from "../src/dataplane/iptables.js";
import { parseIpsetList, planPrepare } from "../src/dataplane/ipsetPlan.js";
import { parseSave, planTable } from "../src/dataplane/iptablesPlan.js";
import { PolicyDataplane } from "../src/dataplane/policyDataplane.js";
import { NftablesDataplane } from "../src/dataplane/nftables.js";
import { parseNftTable, planNft } from "../src/dataplane/nftPlan.js";
import { formatNftTable, nftSet, nftTable } from "../src/render/nftFormat.js";
import { type PodEndpoint, type WorkloadEndpointRecord, hostIfaceName } from "../src/model/endpoint.js";
import { parseCidr } from "../src/model/ip.js";
import { type HostRulesInput, hostRuleset, underlayIpsets } from "../src/render/hostRules.js";
import { endpointChainName, policyChainName, renderPolicy } from "../src/render/policy.js";
import type { PolicyRender } from "../src/render/policyContract.js";
import { type Ruleset, type TableSpec, renderTable } from "../src/render/ruleset.js";
import { formatTable } from "../src/render/iptablesFormat.js";
import { type Rule, ruleKey } from "../src/render/rules.js";
import { etcdConnection, etcdFlags, startEtcd } from "../src/sandbox/etcdServer.js";
import { writeLocalRecord } from "../src/cni/localRecords.js";
import { publishedValue } from "../src/datastore/etcdEndpointPublisher.js";
import { addNetns, delNetns, listNetns, netnsPids } from "../src/sandbox/netns.js";
import { binPath } from "../src/sandbox/paths.js";
import { type LogRecord, type Poller, countIpsets, countRules, max, median, nodePidOf, percentile, nsSh, pollInNs, pollNftInNs, procCpu, procMemory, q, readLog, sleep, timeInNs, waitForLog } from "./lib/nsTools.js";
import type { NftCondition } from "./lib/nftPoll.js";
import { synthCluster } from "./lib/synthCluster.js";

interface Options {
  namespaces: number;
  pods: number;
  local: number;
  policies: number;
  remoteNodes: number;
  changes: number;
  localChanges: number;
  modes: BenchMode[];
  quietS: number;
  seed: number;
  policyChanges: number;
  podChanges: number;
  churn: number;
  /** Extra agent flags (--agent-arg, repeatable), for experiments such as --route-resync=60s. */
  agentArgs: string[];
}

/** The iptables dataplane on one of its backends, or the native nftables dataplane. */
type BenchMode = IptablesMode | "nftables";
const MODES: readonly BenchMode[] = ["nft", "legacy", "nftables"];
/** The iptables backend a mode's agent runs (on nftables: for the FORWARD accept rules only). */
const iptablesOf = (m: BenchMode): IptablesMode => (m === "nftables" ? "nft" : m);
const modeTag = (m: BenchMode): string => (m === "nft" ? "n" : m === "legacy" ? "l" : "t");

/** A poller's condition: a shell test (iptables modes) or an nfnetlink condition (nftables). */
type Cond = string | NftCondition;

/** What the pollers run to see the kernel, per mode. */
interface KernelView {
  /** True when `member` (ipset member syntax) is in the set, or (`want` false) is not. */
  setHas(set: string, member: string, want: boolean): Cond;
  chainExists(chain: string, want: boolean): Cond;
  /** True when the policy chains (slc-pi-...) the chain jumps to are, in order, `targets` (space separated). */
  chainTargets(chain: string, targets: string): Cond;
  /** True when the chain's rules name `text` (or, `want` false, do not). */
  chainNames(chain: string, text: string, want: boolean): Cond;
  /** One look at a chain and at a set with the command-line tools, for the poll-cost baselines. */
  cost: { chain(chain: string): string; set(set: string, member: string): string };
}

function kernelView(mode: BenchMode): KernelView {
  if (mode === "nftables") {
    return {
      setHas: (set, has, want) => ({ set, has, want }),
      chainExists: (chain, exists) => ({ chain, exists }),
      chainTargets: (chain, targets) => ({ chain, targets }),
      chainNames: (chain, names, want) => ({ chain, names, want }),
      cost: { chain: (chain) => `nft list chain ip sluice ${q(chain)} >/dev/null 2>&1 || true`, set: (set, member) => `nft get element ip sluice ${q(set)} ${q(`{ ${member.replace(/,(\w+):(\d+)$/, " . $1 . $2")} }`)} >/dev/null 2>&1 || true` },
    };
  }
  const ipt = binaries(4, mode).save.replace(/-save$/, "");
  const not = (want: boolean): string => (want ? "" : "! ");
  return {
    setHas: (set, member, want) => `${not(want)}ipset test ${q(set)} ${q(member)} 2>/dev/null`,
    chainExists: (chain, want) => `${not(want)}${ipt} -w -S ${q(chain)} >/dev/null 2>&1`,
    chainTargets: (chain, targets) => `[ "$(${ipt} -w -S ${q(chain)} 2>/dev/null | grep -o 'slc-pi-[0-9a-f]*' | tr '\\n' ' ' | sed 's/ $//')" = ${q(targets)} ]`,
    chainNames: (chain, text, want) => `${not(want)}${ipt} -w -S ${q(chain)} 2>/dev/null | grep -q -- ${q(text)}`,
    cost: { chain: (chain) => `${ipt} -w -S ${q(chain)} >/dev/null 2>&1 || true`, set: (set, member) => `ipset test ${q(set)} ${q(member)} 2>/dev/null || true` },
  };
}

const poll = (ns: string, cond: Cond): Poller => (typeof cond === "string" ? pollInNs(ns, cond) : pollNftInNs(ns, cond));

/** Waits until `cond` holds (already holding is fine). */
async function waitUntil(ns: string, cond: Cond): Promise<void> {
  const p = poll(ns, cond);
  try {
    await p.done;
  } catch (err) {
    if (!/already true/.test((err as Error).message)) throw err;
  }
}

/** Our nft table's chains, rules, sets and elements, counted as the iptables counters count (hooks: the base chains' jumps). */
function countNft(json: string): { rules: ReturnType<typeof countRules>; ipsets: ReturnType<typeof countIpsets> } {
  const t = parseNftTable(json, 4);
  const own = t.chains.filter((c) => !c.base);
  const rules = own.reduce((n, c) => n + c.rules.length, 0);
  const hooks = t.chains.filter((c) => c.base).reduce((n, c) => n + c.rules.length, 0);
  const byType: Record<string, number> = {};
  for (const set of t.sets) {
    const k = set.interval ? "hash:net" : set.type.includes(" . ") ? "hash:ip,port" : "hash:ip";
    byType[k] = (byType[k] ?? 0) + 1;
  }
  const sizes = t.sets.map((x) => x.elements.length);
  return {
    rules: { chains: own.length, rules, hooks, totalRules: rules + hooks },
    ipsets: { sets: t.sets.length, members: sizes.reduce((a, b) => a + b, 0), byType, largest: sizes.length ? Math.max(...sizes) : 0 },
  };
}

const NODE = "bench-node";
const NETWORK = "10.0.0.0/12";
const LOCAL_SUBNET = "10.0.4.0/22";
/** Where the bench's sluice-cni allocates: inside the lease, above every synthetic local pod (10.0.4.2-10.0.5.x) and the hand-made ones (10.0.7.200+). */
const CNI_SUBNET = "10.0.6.1/24";
const remoteSubnet = (k: number): string => `10.0.${4 * (k + 1)}.0/22`;
const UNDERLAY = { addr: "192.0.2.2/24", gw: "192.0.2.1" };
/**
 * The host-rules input of the bench node as its agent builds it: host-gw on eth0, and no
 * peer holds a lease (the other nodes exist only as endpoint records), so the underlay
 * trust rules trust nobody.
 */
const HOST_INPUT: HostRulesInput = { family: 4, network: parseCidr(NETWORK), subnet: parseCidr(LOCAL_SUBNET), ipMasq: false, randomFully: false, forwardRules: true, underlay: { iface: "eth0", tunnel: undefined, peers: [] } };
/** The filter table of a ruleset (the raw table comes first). */
const filterOf = (spec: Ruleset): TableSpec => {
  const t = spec.tables.find((x) => x.table === "filter");
  if (!t) throw new Error("no filter table in the ruleset");
  return t;
};

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { namespaces: 50, pods: 5000, local: 500, policies: 1000, remoteNodes: 9, changes: 10, localChanges: 6, modes: ["nft", "legacy", "nftables"], quietS: 12, seed: 42, policyChanges: 10, podChanges: 6, churn: 200, agentArgs: [] };
  const num = (k: string, v: string | undefined): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${k}: "${String(v)}" is not a non-negative integer`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const [flag, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const val = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case "--namespaces": o.namespaces = num("namespaces", val()); break;
      case "--pods": o.pods = num("pods", val()); break;
      case "--local": o.local = num("local", val()); break;
      case "--policies": o.policies = num("policies", val()); break;
      case "--remote-nodes": o.remoteNodes = Math.max(1, num("remote-nodes", val())); break;
      case "--changes": o.changes = num("changes", val()); break;
      case "--local-changes": o.localChanges = num("local-changes", val()); break;
      case "--quiet": o.quietS = num("quiet", val()); break;
      case "--seed": o.seed = num("seed", val()); break;
      case "--policy-changes": o.policyChanges = num("policy-changes", val()); break;
      case "--pod-changes": o.podChanges = num("pod-changes", val()); break;
      case "--churn": o.churn = num("churn", val()); break;
      case "--agent-arg": o.agentArgs.push(val() ?? ""); break;
      case "--modes": {
        const modes = (val() ?? "").split(",").filter(Boolean);
        if (modes.length === 0 || modes.some((m) => !MODES.includes(m as BenchMode))) throw new Error(`--modes: a comma-separated list of ${MODES.join(", ")}`);
        o.modes = modes as BenchMode[];
        break;
      }
      default:
        throw new Error(`unknown argument ${a} (see the header of bench/policyScale.ts)`);
    }
  }
  if (o.local > o.pods) throw new Error("--local must not exceed --pods");
  if (o.namespaces < 3) throw new Error("--namespaces must be at least 3");
  return o;
}

/** Cleanup steps, run newest first, each on its own (one failing does not stop the rest). */
class Cleanup {
  private steps: { what: string; fn: () => unknown }[] = [];
  private running: Promise<void> | undefined;
  /** Registers a step; once cleanup has started (a signal came), the step runs right after it. */
  add(what: string, fn: () => unknown): void {
    if (this.running) this.running = this.running.then(() => this.step({ what, fn }));
    else this.steps.push({ what, fn });
  }
  /** Runs every step once, including steps added meanwhile; every caller waits for all of it. */
  async runAll(): Promise<void> {
    this.running ??= this.run();
    for (let p = this.running; ; p = this.running) {
      await p;
      if (p === this.running) return;
    }
  }
  private async step(s: { what: string; fn: () => unknown }): Promise<void> {
    try {
      await s.fn();
    } catch (err) {
      process.stderr.write(`cleanup of ${s.what} failed: ${(err as Error).message}\n`);
    }
  }
  private async run(): Promise<void> {
    for (const s of this.steps.reverse()) await this.step(s);
  }
}

const say = (s: string): void => void process.stderr.write(`[bench] ${s}\n`);
const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
const chunks = <T>(xs: readonly T[], n: number): T[][] => Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));

/** Namespaces we created: their processes are ours; stop them, then delete the namespace. */
async function removeNs(name: string): Promise<void> {
  if (!(await listNetns()).includes(name)) return;
  for (const pid of await netnsPids(name)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  await delNetns(name);
}

async function makeNs(name: string, cleanup: Cleanup): Promise<string> {
  await removeNs(name);
  await addNetns(name);
  cleanup.add(`namespace ${name}`, () => removeNs(name));
  return name;
}

/** The agent's node in a namespace, with a veth underlay to a peer namespace and a default route. */
async function makeNode(prefix: string, tag: string, cleanup: Cleanup): Promise<string> {
  const ns = await makeNs(`${prefix}-${tag}`, cleanup);
  const peer = await makeNs(`${prefix}-${tag}p`, cleanup);
  await run("ip", ["link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "p0", "netns", peer]);
  await nsSh(ns, `ip addr add ${UNDERLAY.addr} dev eth0 && ip link set eth0 up && ip route add default via ${UNDERLAY.gw}`);
  await nsSh(peer, `ip addr add ${UNDERLAY.gw}/24 dev p0 && ip link set p0 up`);
  return ns;
}

/**
 * One sluice-cni call inside the node's namespace, as a runtime makes it; its wall time
 * from spawn to exit (ms). The plugin allocates from its own subnet file, a /24 at the top
 * of the node's lease that no synthetic pod uses.
 */
async function cniCall(nodeNs: string, command: "ADD" | "DEL", c: { dataDir: string; subnetFile: string; netns: string; namespace: string; pod: string; containerId: string; policyReadyTimeoutMs: number }): Promise<number> {
  if (!existsSync(c.subnetFile)) writeFileSync(c.subnetFile, `FLANNEL_NETWORK=${NETWORK}\nFLANNEL_SUBNET=${CNI_SUBNET}\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n`);
  const conf = JSON.stringify({ cniVersion: "1.1.0", name: "bench", type: "sluice", subnetFile: c.subnetFile, dataDir: c.dataDir, nodeName: NODE, policyReadyTimeoutMs: c.policyReadyTimeoutMs });
  const env = { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin", CNI_COMMAND: command, CNI_CONTAINERID: c.containerId, CNI_NETNS: `/var/run/netns/${c.netns}`, CNI_IFNAME: "eth0", CNI_ARGS: `K8S_POD_NAMESPACE=${c.namespace};K8S_POD_NAME=${c.pod}`, CNI_PATH: "/usr/lib/cni" };
  const t = performance.now();
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn("ip", ["netns", "exec", nodeNs, process.execPath, binPath("sluice-cni")], { env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("close", (code) => resolve({ code, out }));
    child.stdin.end(conf);
  });
  const took = performance.now() - t;
  if (r.code !== 0) throw new Error(`sluice-cni ${command} ${c.namespace}/${c.pod} failed (exit ${r.code}): ${r.out.slice(0, 600)}`);
  return took;
}

// ---------------------------------------------------------------- the model (pure render)

async function listSnapshot(client: Etcd3): Promise<{ snapshot: PolicySnapshot; ms: number }> {
  const src = new PolicySource({ client, log: pino({ level: "silent" }), requestTimeoutMs: 60_000 });
  const t = performance.now();
  await src.start();
  const snapshot = src.snapshot();
  const ms = performance.now() - t;
  await src.stop();
  return { snapshot, ms };
}

const renderOf = (s: Pick<PolicySnapshot, "endpoints" | "namespaces" | "networkPolicies">): PolicyRender =>
  renderPolicy({ family: 4, nodeName: NODE, endpoints: s.endpoints, namespaces: s.namespaces, networkPolicies: s.networkPolicies, sctpSupported: false });

interface SetChange {
  name: string;
  /** What `ipset test` takes: the address, or address,proto:port. */
  member: string;
  /** Present in the mutated state (absent in the original one), or the reverse. */
  inMutated: boolean;
}

interface Mutation {
  ep: PodEndpoint;
  original: Record<string, string>;
  mutated: Record<string, string>;
  sets: SetChange[];
  /** Endpoint chains whose rules differ. */
  chains: string[];
  /** slc-pi targets of the pod's ingress chain, original and mutated. */
  ingressTargets: { original: string; mutated: string };
}

const piTargets = (rules: readonly Rule[]): string => rules.flatMap((r) => (r.action.kind === "jump" && r.action.chain.startsWith("slc-pi-") ? [r.action.chain] : [])).join(" ");

function mutate(snap: PolicySnapshot, base: PolicyRender, ep: PodEndpoint, mutated: Record<string, string>): Mutation {
  const endpoints = snap.endpoints.map((e) => (e === ep ? { ...e, labels: mutated } : e));
  const after = renderOf({ ...snap, endpoints });
  const ip = ep.ips[0] as string;
  const sets: SetChange[] = [];
  const beforeSets = new Map(base.ipsets.map((s) => [s.name, s]));
  for (const s of after.ipsets) {
    const b = beforeSets.get(s.name);
    const mine = (ms: readonly string[]): Set<string> => new Set(ms.filter((m) => m === ip || m.startsWith(`${ip},`)));
    const was = mine(b?.members ?? []);
    const now = mine(s.members);
    for (const m of now) if (!was.has(m)) sets.push({ name: s.name, member: m, inMutated: true });
    for (const m of was) if (!now.has(m)) sets.push({ name: s.name, member: m, inMutated: false });
  }
  const beforeChains = new Map(base.chains.map((c) => [c.name, ruleKey(c.rules)]));
  const chains = after.chains.filter((c) => beforeChains.get(c.name) !== ruleKey(c.rules)).map((c) => c.name);
  const tw = endpointChainName("ingress", ep.hostIface);
  return {
    ep,
    original: ep.labels,
    mutated,
    sets: sets.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    chains,
    ingressTargets: { original: piTargets(base.chains.find((c) => c.name === tw)?.rules ?? []), mutated: piTargets(after.chains.find((c) => c.name === tw)?.rules ?? []) },
  };
}

/**
 * A remote web pod relabelled tier=frontend -> tier=backend (one label): it leaves the
 * frontend peer sets and joins backend ones. The candidate that moves the most sets wins.
 */
function pickRemoteMutation(snap: PolicySnapshot, base: PolicyRender): Mutation {
  const cands = snap.endpoints.filter((e) => e.node !== NODE && e.labels["app"] === "web" && e.labels["tier"] === "frontend").slice(0, 3);
  let best: Mutation | undefined;
  for (const ep of cands) {
    const m = mutate(snap, base, ep, { ...ep.labels, tier: "backend" });
    if (!best || m.sets.length > best.sets.length) best = m;
  }
  if (!best || best.sets.length === 0) throw new Error("no remote pod whose label change moves it between peer sets");
  return best;
}

/** A local pod that becomes a canary (track=canary): the namespace's canary policy then selects it. */
function pickLocalMutation(snap: PolicySnapshot, base: PolicyRender): Mutation {
  const cands = snap.endpoints.filter((e) => e.node === NODE && e.labels["track"] !== "canary").slice(0, 4);
  let best: Mutation | undefined;
  for (const ep of cands) {
    const m = mutate(snap, base, ep, { ...ep.labels, track: "canary" });
    if (m.ingressTargets.original === m.ingressTargets.mutated) continue;
    if (!best || m.sets.length > best.sets.length) best = m;
  }
  if (!best) throw new Error("no local pod whose label change changes which policies select it");
  return best;
}

// ---------------------------------------------------------------- per-backend run

interface ChangeSample {
  /** Label write (etcd put start) -> the poller saw the kernel change. */
  latency: number;
  put: number;
  /** From the agent's log, ms after the write: render started, render ended, ipset restore done, iptables restore done, apply done. */
  renderStart?: number;
  render?: number;
  ipsetsDone?: number;
  iptablesDone?: number;
  applyDone?: number;
  applyMs?: number;
  pollIterations: number;
}

interface ModeResult {
  mode: BenchMode;
  firstProgram: number;
  stages: Array<[string, number | undefined]>;
  rules: ReturnType<typeof countRules>;
  ipsets: ReturnType<typeof countIpsets>;
  modelMatches: string;
  memFirst: ReturnType<typeof procMemory>;
  memEnd: ReturnType<typeof procMemory>;
  remote: ChangeSample[];
  local: ChangeSample[];
  /** Policy created -> its chain in the pod's slc-tw chain; deleted -> out of it (ms). */
  policyCreated: number[];
  policyDeleted: number[];
  /** A new local pod -> its slc-tw chain exists; the pod deleted -> the chain is gone (ms). */
  podAdded: number[];
  podRemoved: number[];
  /** sluice-cni ADD wall time (spawn to exit) with policyReadyTimeoutMs, and without (ms). */
  cniAdd: { ready: number[]; plain: number[] };
  /** RSS (MiB) after every tenth of the churn changes, and the latencies of all of them. */
  churnRss: number[];
  churnLatency: number[];
  quiet: { seconds: number; cpuSelf: number; cpuChildren: number; applies: number; kernelReads: number };
  baseline: { nftRestore: number[]; nftList: number[]; nftBytes: number; ipsetRestore: number[]; iptablesRestore: number[]; iptablesSave: number[]; ipsetList: number[]; ipsetSave: number[]; ipsetTerse: number[]; oneChainRestore: number[]; chainPoll: number[]; setPoll: number[]; nsExec: number[]; saveBytes: number; ipsetBytes: number };
  noop: { list: number; render: number; nftExec: number[]; nftParse: number[]; nftBuild: number[]; nftPlan: number[]; ipsetExec: number[]; ipsetParse: number[]; ipsetPlan: number[]; iptablesExec: number[]; iptablesParse: number[]; iptablesHash: number[]; iptablesDiff: number[]; apply: number[]; wrote: boolean };
}

async function runMode(mode: BenchMode, o: Options, ctx: { prefix: string; dir: string; cleanup: Cleanup; client: Etcd3; etcdFlags: string[]; localRecords: WorkloadEndpointRecord[]; snap: PolicySnapshot; base: PolicyRender; remote: Mutation; local: Mutation }): Promise<ModeResult> {
  const { prefix, dir, cleanup, client } = ctx;
  const ns = await makeNode(prefix, modeTag(mode), cleanup);
  const bins = binaries(4, iptablesOf(mode));
  const view = kernelView(mode);
  const logPath = join(dir, `agent-${mode}.log`);
  // The local pods' records, as sluice-cni leaves them on the node: the agent publishes them
  // to etcd, where the bench already put the very same values (so it writes nothing).
  for (const r of ctx.localRecords) writeLocalRecord(join(dir, `cni-${mode}`), r);
  const fd = openSync(logPath, "w");
  const args = [
    "netns", "exec", ns, process.execPath, binPath("sluice-agent"),
    ...ctx.etcdFlags,
    "--iface", "eth0",
    "--subnet-file", join(dir, `subnet-${mode}.env`),
    // Its 500 local pods get policy-ready marks: keep them in the bench's own directory.
    "--cni-data-dir", join(dir, `cni-${mode}`),
    "--node-name", NODE,
    "--iptables-backend", iptablesOf(mode),
    "--dataplane", mode === "nftables" ? "nftables" : "iptables",
    "--enable-policy",
    "--log-level", "debug",
    ...o.agentArgs,
  ];
  say(`${mode}: starting the agent in ${ns}`);
  const tSpawn = Date.now();
  const agent: ChildProcess = spawn("ip", args, { stdio: ["ignore", fd, fd] });
  closeSync(fd);
  let exited = false;
  let exitNote: string | undefined;
  agent.once("exit", (code, signal) => {
    exited = true;
    exitNote = `the agent exited (code ${code}, signal ${signal}); see its log`;
  });
  const gone = (): string | undefined => exitNote;
  cleanup.add(`agent (${mode})`, async () => {
    if (exited) return;
    agent.kill("SIGTERM");
    for (let i = 0; i < 50 && !exited; i++) await sleep(100);
    if (!exited) agent.kill("SIGKILL");
  });

  const inPlace = await waitForLog(logPath, (r) => r.msg === "host rules and policy in place", 120_000, gone);
  const firstProgram = inPlace.time - tSpawn;
  const pid = nodePidOf(agent.pid as number);
  const memFirst = procMemory(pid);
  const recs = readLog(logPath);
  const at = (pred: (r: LogRecord) => boolean): number | undefined => {
    const r = recs.find(pred);
    return r ? r.time - tSpawn : undefined;
  };
  const rendered = recs.find((r) => r.msg === "policy rendered");
  const stages: Array<[string, number | undefined]> = [
    ["node up, first log line", at(() => true)],
    ["subnet lease acquired", at((r) => r.msg === "subnet lease acquired")],
    ["dataplane chosen (probes done; policy list starts)", at((r) => r.msg === "dataplane chosen")],
    ["policy data listed (etcd list + decode)", at((r) => r.msg === "policy data listed")],
    ["render started", rendered ? rendered.time - Number(rendered["ms"]) - tSpawn : undefined],
    ["render done", rendered ? rendered.time - tSpawn : undefined],
    ["ipsets created and filled (ipset restore)", at((r) => r.msg === "ipsets updated" && r["step"] === "prepare")],
    ["filter table written (iptables-restore)", at((r) => r.msg === "iptables updated" && r["table"] === "filter")],
    ["nft table written (nft -f, nftables)", at((r) => r.msg === "nftables table written")],
    ["host rules and policy in place", firstProgram],
  ];
  say(`${mode}: first full program after ${firstProgram} ms`);
  await sleep(500); // let the first apply's removeStale and any follow-up settle

  // Counts, against the pure render of the same snapshot (nftables: the table the formatter makes of it, raw and filter together).
  const expectSets = [...underlayIpsets(HOST_INPUT), ...ctx.base.ipsets];
  let rules: ReturnType<typeof countRules>;
  let ipsets: ReturnType<typeof countIpsets>;
  let expect: { chains: number; rules: number; sets: number; members: number };
  if (mode === "nftables") {
    ({ rules, ipsets } = countNft(await nsSh(ns, "nft -j list table ip sluice")));
    const t = nftTable(hostRuleset(HOST_INPUT, ctx.base, ["filter"]), expectSets.map(nftSet));
    const own = t.chains.filter((c) => !c.base);
    expect = { chains: own.length, rules: own.reduce((n, c) => n + c.rules.length, 0), sets: t.sets.length, members: t.sets.reduce((n, x) => n + x.elements.length, 0) };
  } else {
    rules = countRules(await nsSh(ns, `${bins.save} -t filter`));
    ipsets = countIpsets(await nsSh(ns, "ipset save"));
    const filterSpec = filterOf(hostRuleset(HOST_INPUT, ctx.base, ["filter"]));
    expect = { chains: filterSpec.chains.length, rules: filterSpec.chains.reduce((n, c) => n + c.rules.length, 0), sets: expectSets.length, members: expectSets.reduce((n, x) => n + x.members.length, 0) };
  }
  const modelMatches = rules.rules === expect.rules && rules.chains === expect.chains && ipsets.sets === expect.sets && ipsets.members === expect.members ? "yes" : `NO (model: ${expect.chains} chains, ${expect.rules} rules, ${expect.sets} sets, ${expect.members} members)`;

  // Label changes. Each waits for the previous apply to finish and settles for a moment.
  const change = async (m: Mutation, toMutated: boolean, cond: Cond): Promise<ChangeSample> => {
    const key = podKey(m.ep.namespace, m.ep.pod);
    const stored = JSON.parse((await client.get(key).string()) ?? "null") as KubeObject | null;
    if (!stored) throw new Error(`pod ${key} is not in etcd`);
    stored.metadata.labels = toMutated ? m.mutated : m.original;
    const text = JSON.stringify(stored);
    const poller = poll(ns, cond);
    cleanup.add("poller", () => poller.kill());
    await poller.armed;
    const t0 = Date.now();
    await client.put(key).value(text);
    const put = Date.now() - t0;
    const doneAt = await poller.done;
    const applied = await waitForLog(logPath, (r) => r.msg === "policy dataplane applied" && r.time >= t0, 60_000, gone);
    const after = readLog(logPath).filter((r) => r.time >= t0);
    const first = (pred: (r: LogRecord) => boolean): LogRecord | undefined => after.find(pred);
    const rend = first((r) => r.msg === "policy rendered");
    const ips = first((r) => r.msg === "ipsets updated" && r["step"] === "prepare");
    const ipt = first((r) => r.msg === "iptables updated" && r["table"] === "filter");
    await sleep(250);
    return {
      latency: doneAt - t0,
      put,
      renderStart: rend ? rend.time - Number(rend["ms"]) - t0 : undefined,
      render: rend ? Number(rend["ms"]) : undefined,
      ipsetsDone: ips ? ips.time - t0 : undefined,
      iptablesDone: ipt ? ipt.time - t0 : undefined,
      applyDone: applied.time - t0,
      applyMs: Number(applied["ms"]),
      pollIterations: poller.iterations(),
    };
  };

  const setCond = (m: Mutation, toMutated: boolean): Cond => {
    const last = m.sets[m.sets.length - 1] as SetChange; // the restore writes sets in name order: the last one is updated last
    return view.setHas(last.name, last.member, last.inMutated === toMutated);
  };
  const chainCond = (m: Mutation, toMutated: boolean): Cond => view.chainTargets(endpointChainName("ingress", m.ep.hostIface), toMutated ? m.ingressTargets.mutated : m.ingressTargets.original);

  const remote: ChangeSample[] = [];
  for (let i = 0; i < o.changes; i++) {
    const toMutated = i % 2 === 0;
    remote.push(await change(ctx.remote, toMutated, setCond(ctx.remote, toMutated)));
    say(`${mode}: remote label change ${i + 1}/${o.changes}: ${remote[i]?.latency.toFixed(0)} ms`);
  }
  if (o.changes % 2 === 1) await change(ctx.remote, false, setCond(ctx.remote, false)); // back to the original labels
  const local: ChangeSample[] = [];
  for (let i = 0; i < o.localChanges; i++) {
    const toMutated = i % 2 === 0;
    local.push(await change(ctx.local, toMutated, chainCond(ctx.local, toMutated)));
    say(`${mode}: local label change ${i + 1}/${o.localChanges}: ${local[i]?.latency.toFixed(0)} ms`);
  }
  if (o.localChanges % 2 === 1) await change(ctx.local, false, chainCond(ctx.local, false));

  // Policies created and deleted: the new policy selects the local pod, so its chain joins the pod's slc-tw chain.
  const twOf = (iface: string): string => endpointChainName("ingress", iface);
  const timed = async (cond: Cond, write: () => Promise<unknown>): Promise<number> => {
    const poller = poll(ns, cond);
    cleanup.add("poller", () => poller.kill());
    await poller.armed;
    const t0 = Date.now();
    await write();
    return (await poller.done) - t0;
  };
  const store = new EtcdResourceStore(client);
  const policyCreated: number[] = [];
  const policyDeleted: number[] = [];
  const target = ctx.local.ep;
  for (let i = 0; i < Math.ceil(o.policyChanges / 2); i++) {
    const name = `bench-probe-${mode}-${i}`;
    const np = { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace: target.namespace }, spec: { podSelector: {}, policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { "bench-probe": String(i) } } }] }] } } as KubeObject;
    const chain = policyChainName("ingress", `${target.namespace}/${name}`);
    policyCreated.push(await timed(view.chainNames(twOf(target.hostIface), chain, true), () => store.applyAll([np])));
    await sleep(150);
    policyDeleted.push(await timed(view.chainNames(twOf(target.hostIface), chain, false), () => store.deleteAll([{ kind: networkPolicyKind, namespace: target.namespace, name }])));
    await sleep(150);
  }
  say(`${mode}: policy create / delete -> enforced: ${policyCreated.map((x) => x.toFixed(0)).join(" ")} / ${policyDeleted.map((x) => x.toFixed(0)).join(" ")} ms`);

  // New local pods: a Pod object and its endpoint record, as the API server and sluice-cni would write them.
  const podAdded: number[] = [];
  const podRemoved: number[] = [];
  for (let i = 0; i < Math.ceil(o.podChanges / 2); i++) {
    const podName = `bench-new-${mode}-${i}`;
    const pod = { apiVersion: "v1", kind: "Pod", metadata: { name: podName, namespace: target.namespace, labels: { ...target.labels } }, spec: { nodeName: NODE, containers: [{ name: "c", image: "x" }] } } as KubeObject;
    const record: WorkloadEndpointRecord = { namespace: target.namespace, pod: podName, node: NODE, ifName: "eth0", hostIface: hostIfaceName(target.namespace, podName), containerId: `bench${i}`, ips: [`10.0.7.${200 + i}`] };
    const parsed = parseWorkloadEndpointRecord(record);
    if (!parsed.ok) throw new Error(`bench endpoint record is invalid: ${parsed.reason}`);
    const recKey = workloadEndpointKey(NODE, record.namespace, podName, "eth0");
    podAdded.push(await timed(view.chainExists(twOf(record.hostIface), true), async () => {
      await store.applyAll([pod]);
      await client.put(recKey).value(publishedValue(parsed.record, NODE));
    }));
    await sleep(150);
    podRemoved.push(await timed(view.chainExists(twOf(record.hostIface), false), async () => {
      await client.delete().key(recKey);
      await store.deleteAll([{ kind: podKind, namespace: target.namespace, name: podName }]);
    }));
    await sleep(150);
  }
  say(`${mode}: new local pod -> chains / removed -> gone: ${podAdded.map((x) => x.toFixed(0)).join(" ")} / ${podRemoved.map((x) => x.toFixed(0)).join(" ")} ms`);

  // The real sluice-cni ADD, as a runtime calls it once the scheduler has written the Pod:
  // with the manifests' policyReadyTimeoutMs (it returns once the agent has programmed the
  // pod and marked it ready) and, paired, with no wait, so that the difference is the wait.
  const cniAdd = { ready: [] as number[], plain: [] as number[] };
  for (let i = 0; i < o.podChanges; i++) {
    for (const wait of [true, false]) {
      const podName = `bench-cni-${mode}-${wait ? "w" : "p"}${i}`;
      const podNs = await makeNs(`${prefix}-c${modeTag(mode)}${wait ? "w" : "p"}${i}`, cleanup);
      await store.applyAll([{ apiVersion: "v1", kind: "Pod", metadata: { name: podName, namespace: target.namespace, labels: { ...target.labels } }, spec: { nodeName: NODE, containers: [{ name: "c", image: "x" }] } } as KubeObject]);
      const call = (command: "ADD" | "DEL"): Promise<number> => cniCall(ns, command, { dataDir: join(dir, `cni-${mode}`), subnetFile: join(dir, `cni-subnet-${mode}.env`), netns: podNs, namespace: target.namespace, pod: podName, containerId: `bench-cni-${mode}-${wait ? "w" : "p"}${i}`, policyReadyTimeoutMs: wait ? 10_000 : 0 });
      (wait ? cniAdd.ready : cniAdd.plain).push(await call("ADD"));
      // The next ADD starts once this pod is programmed and its removal too, so that no
      // call shares the agent with the last one's work.
      const tw = twOf(hostIfaceName(target.namespace, podName));
      await waitUntil(ns, view.chainExists(tw, true));
      await timed(view.chainExists(tw, false), async () => {
        await call("DEL");
        await store.deleteAll([{ kind: podKind, namespace: target.namespace, name: podName }]);
      });
      await sleep(150);
    }
  }
  say(`${mode}: CNI ADD with policyReadyTimeoutMs / without: ${cniAdd.ready.map((x) => x.toFixed(0)).join(" ")} / ${cniAdd.plain.map((x) => x.toFixed(0)).join(" ")} ms`);

  // Churn: consecutive remote label changes, each as soon as the previous one is in the kernel; RSS sampled along.
  const churnRss: number[] = [procMemory(pid).rssMiB];
  const churnLatency: number[] = [];
  const key = podKey(ctx.remote.ep.namespace, ctx.remote.ep.pod);
  const storedPod = JSON.parse((await client.get(key).string()) ?? "null") as KubeObject | null;
  if (!storedPod) throw new Error(`pod ${key} is not in etcd`);
  for (let i = 0; i < o.churn; i++) {
    const toMutated = i % 2 === 0;
    storedPod.metadata.labels = toMutated ? ctx.remote.mutated : ctx.remote.original;
    const text = JSON.stringify(storedPod);
    churnLatency.push(await timed(setCond(ctx.remote, toMutated), async () => client.put(key).value(text)));
    if ((i + 1) % Math.max(1, Math.floor(o.churn / 10)) === 0) churnRss.push(procMemory(pid).rssMiB);
  }
  if (o.churn % 2 === 1) await change(ctx.remote, false, setCond(ctx.remote, false));
  if (o.churn) say(`${mode}: churn of ${o.churn}: RSS ${churnRss.map((x) => x.toFixed(0)).join(" ")} MiB`);
  await sleep(500);

  // Nothing changes for a while: what do the periodic resyncs cost?
  say(`${mode}: quiet window of ${o.quietS} s`);
  const cpu0 = procCpu(pid);
  const q0 = Date.now();
  await sleep(o.quietS * 1000);
  const cpu1 = procCpu(pid);
  const quietSeconds = (Date.now() - q0) / 1000;
  const quietLog = readLog(logPath).filter((r) => r.time >= q0);
  const appliesInQuiet = quietLog.filter((r) => r.msg === "policy dataplane applied").length;
  const kernelReads = quietLog.filter((r) => r.msg === "policy dataplane applied" || r.msg === "policy dataplane checked").reduce((n, r) => n + (Number(r["reads"]) || 0), 0);
  const memEnd = procMemory(pid);

  // Baselines: the agent's final state restored into empty namespaces; reads alone.
  say(`${mode}: baselines`);
  const baseline: ModeResult["baseline"] = { nftRestore: [], nftList: [], nftBytes: 0, ipsetRestore: [], iptablesRestore: [], iptablesSave: [], ipsetList: [], ipsetSave: [], ipsetTerse: [], oneChainRestore: [], chainPoll: [], setPoll: [], nsExec: [], saveBytes: 0, ipsetBytes: 0 };
  const tw = endpointChainName("ingress", ctx.local.ep.hostIface);
  if (mode === "nftables") {
    // The same final table the agent holds, as one bare `nft -f` onto an empty namespace.
    const listedNow = await listSnapshot(client);
    const finalTable = formatNftTable(nftTable(hostRuleset(HOST_INPUT, renderOf(listedNow.snapshot), ["filter"]), [...underlayIpsets(HOST_INPUT), ...renderOf(listedNow.snapshot).ipsets].map(nftSet)));
    const nftFile = join(dir, "table-nftables.nft");
    writeFileSync(nftFile, finalTable);
    baseline.nftBytes = finalTable.length;
    for (let i = 0; i < 3; i++) {
      const fresh = await makeNs(`${prefix}-r${modeTag(mode)}${i}`, cleanup);
      baseline.nftRestore.push(await timeInNs(fresh, `nft -f ${q(nftFile)}`));
      await removeNs(fresh);
    }
  } else {
    const finalSave = await nsSh(ns, `${bins.save} -t filter`);
    const finalIpsets = await nsSh(ns, "ipset save");
    const saveFile = join(dir, `filter-${mode}.save`);
    const ipsetFile = join(dir, `ipset-${mode}.save`);
    writeFileSync(saveFile, finalSave);
    writeFileSync(ipsetFile, finalIpsets);
    baseline.saveBytes = finalSave.length;
    baseline.ipsetBytes = finalIpsets.length;
    // What a one-chain update costs on top of a full table: the local pod's chain rewritten as it is.
    const oneChainFile = join(dir, `one-chain-${mode}.restore`);
    writeFileSync(oneChainFile, ["*filter", `:${tw} - [0:0]`, ...finalSave.split("\n").filter((l) => l.startsWith(`-A ${tw} `)), "COMMIT", ""].join("\n"));
    for (let i = 0; i < 3; i++) {
      const fresh = await makeNs(`${prefix}-r${modeTag(mode)}${i}`, cleanup);
      baseline.ipsetRestore.push(await timeInNs(fresh, `ipset restore < ${q(ipsetFile)}`));
      baseline.iptablesRestore.push(await timeInNs(fresh, `${bins.restore} -w 5 < ${q(saveFile)}`));
      baseline.oneChainRestore.push(await timeInNs(fresh, `${bins.restore} -w 5 --noflush < ${q(oneChainFile)}`));
      await removeNs(fresh);
    }
  }
  for (let i = 0; i < 3; i++) {
    if (mode === "nftables") baseline.nftList.push(await timeInNs(ns, "nft -j list table ip sluice"));
    else {
      baseline.iptablesSave.push(await timeInNs(ns, `${bins.save} -t filter`));
      baseline.ipsetList.push(await timeInNs(ns, "ipset list"));
      baseline.ipsetSave.push(await timeInNs(ns, "ipset save"));
      baseline.ipsetTerse.push(await timeInNs(ns, "ipset list -t"));
    }
    baseline.chainPoll.push(await timeInNs(ns, view.cost.chain(tw)));
    baseline.setPoll.push(await timeInNs(ns, view.cost.set(ctx.remote.sets[0]?.name ?? "", ctx.remote.sets[0]?.member ?? "")));
    const t = performance.now();
    await nsSh(ns, "true");
    baseline.nsExec.push(performance.now() - t);
  }

  // The agent's own apply path, replayed in this process against the agent's namespace:
  // with the same desired state it must write nothing, and each phase is timed.
  say(`${mode}: no-op apply, phase by phase`);
  const listed = await listSnapshot(client);
  const tr = performance.now();
  const render = renderOf(listed.snapshot);
  const renderMs = performance.now() - tr;
  const nspec = hostRuleset(HOST_INPUT, render, ["filter"]);
  const nsets = [...underlayIpsets(HOST_INPUT), ...render.ipsets];
  const noop: ModeResult["noop"] = { list: listed.ms, render: renderMs, nftExec: [], nftParse: [], nftBuild: [], nftPlan: [], ipsetExec: [], ipsetParse: [], ipsetPlan: [], iptablesExec: [], iptablesParse: [], iptablesHash: [], iptablesDiff: [], apply: [], wrote: false };
  if (mode === "nftables") {
    const dp = new NftablesDataplane({ family: 4, netns: ns, log: pino({ level: "silent" }) });
    for (let i = 0; i < 3; i++) {
      let t = performance.now();
      const json = await nsSh(ns, "nft -j list table ip sluice");
      noop.nftExec.push(performance.now() - t);
      t = performance.now();
      const kernel = parseNftTable(json, 4);
      noop.nftParse.push(performance.now() - t);
      t = performance.now();
      const desired = nftTable(nspec, nsets.map(nftSet));
      noop.nftBuild.push(performance.now() - t);
      t = performance.now();
      planNft(kernel, desired);
      noop.nftPlan.push(performance.now() - t);
      t = performance.now();
      const rep = await dp.apply(4, nspec, nsets);
      noop.apply.push(performance.now() - t);
      noop.wrote ||= rep.wrote;
    }
  } else {
    const dp = new PolicyDataplane({ family: 4, mode, netns: ns, log: pino({ level: "silent" }) });
    for (let i = 0; i < 3; i++) {
      // The driver's reads, split into the command (spawned and captured as run() does) and the parse.
      let t = performance.now();
      const ipsetText = await nsSh(ns, "ipset list");
      noop.ipsetExec.push(performance.now() - t);
      t = performance.now();
      const sets = parseIpsetList(ipsetText);
      noop.ipsetParse.push(performance.now() - t);
      t = performance.now();
      planPrepare(4, nsets, sets);
      noop.ipsetPlan.push(performance.now() - t);
      t = performance.now();
      const saveText = await nsSh(ns, `${bins.save} -t filter`);
      noop.iptablesExec.push(performance.now() - t);
      t = performance.now();
      const parsed = parseSave(saveText);
      noop.iptablesParse.push(performance.now() - t);
      t = performance.now();
      const rendered = renderTable(formatTable(filterOf(nspec)));
      noop.iptablesHash.push(performance.now() - t);
      t = performance.now();
      planTable(rendered, parsed.get("filter"));
      noop.iptablesDiff.push(performance.now() - t);
      t = performance.now();
      const rep = await dp.apply(4, nspec, nsets);
      noop.apply.push(performance.now() - t);
      noop.wrote ||= rep.wrote;
    }
  }

  agent.kill("SIGTERM");
  for (let i = 0; i < 50 && !exited; i++) await sleep(100);
  await removeNs(ns);
  await removeNs(`${ns}p`);
  return { mode, firstProgram, stages, rules, ipsets, modelMatches, memFirst, memEnd, remote, local, policyCreated, policyDeleted, podAdded, podRemoved, cniAdd, churnRss, churnLatency, quiet: { seconds: quietSeconds, cpuSelf: cpu1.self - cpu0.self, cpuChildren: cpu1.children - cpu0.children, applies: appliesInQuiet, kernelReads }, baseline, noop };
}

// ---------------------------------------------------------------- report

function table(title: string, header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join("  ");
  return [`\n${title}`, line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function report(o: Options, setup: Array<[string, string]>, results: ModeResult[]): string {
  const modes = results.map((r) => r.mode);
  const row = (label: string, f: (r: ModeResult) => string): string[] => [label, ...results.map(f)];
  const ms = (xs: readonly number[]): string => `${fmt(median(xs))} / ${fmt(max(xs))}`;
  /** A latency as n, median, p99 and max. */
  const lat = (xs: readonly number[]): string => `n=${xs.length} ${fmt(median(xs))} / ${fmt(percentile(xs, 99))} / ${fmt(max(xs))}`;
  const opt = (xs: Array<number | undefined>): number[] => xs.filter((x): x is number => x !== undefined);
  const out: string[] = [];
  out.push(["\nSetup", ...setup.map(([k, v]) => `  ${k}: ${v}`)].join("\n"));
  out.push(
    table("Policy scale: figures (times in ms; \"a / b\" = median / max)", ["figure", ...modes], [
      row("time to first full program (spawn -> in place)", (r) => fmt(r.firstProgram)),
      row("rules in our chains (iptables-save -A lines; nft: rules of our non-base chains)", (r) => String(r.rules.rules)),
      row("our chains", (r) => String(r.rules.chains)),
      row("jump rules in built-in chains (nft: in our base chains)", (r) => String(r.rules.hooks)),
      row("sets (hash:ip / hash:net / hash:ip,port; nft: address / interval / concatenation)", (r) => `${r.ipsets.sets} (${r.ipsets.byType["hash:ip"] ?? 0}/${r.ipsets.byType["hash:net"] ?? 0}/${r.ipsets.byType["hash:ip,port"] ?? 0})`),
      row("set members total (largest set; nft: elements, intervals merged)", (r) => `${r.ipsets.members} (${r.ipsets.largest})`),
      row("kernel state = pure render of the same snapshot", (r) => r.modelMatches),
      row("agent RSS after first program, MiB (VmHWM)", (r) => `${fmt(r.memFirst.rssMiB)} (${fmt(r.memFirst.hwmMiB)})`),
      row("agent RSS at the end, MiB (VmHWM)", (r) => `${fmt(r.memEnd.rssMiB)} (${fmt(r.memEnd.hwmMiB)})`),
      row("remote pod label change -> set (n, median / p99 / max)", (r) => lat(r.remote.map((s) => s.latency))),
      row("local pod label change -> its slc-tw chain", (r) => lat(r.local.map((s) => s.latency))),
      row("policy created -> in the local pod's chain", (r) => lat(r.policyCreated)),
      row("policy deleted -> out of it", (r) => lat(r.policyDeleted)),
      row("new local pod -> its slc-tw chain exists", (r) => lat(r.podAdded)),
      row("local pod deleted -> its chain is gone", (r) => lat(r.podRemoved)),
      row("sluice-cni ADD -> returns policy-ready (whole call)", (r) => lat(r.cniAdd.ready)),
      row("sluice-cni ADD without the wait (same run)", (r) => lat(r.cniAdd.plain)),
      row("  the wait for policy-ready (difference of medians)", (r) => fmt(median(r.cniAdd.ready) - median(r.cniAdd.plain))),
      row(`churn: ${o.churn} remote label changes back to back`, (r) => lat(r.churnLatency)),
      row("  agent RSS along the churn, MiB (every tenth)", (r) => r.churnRss.map((x) => fmt(x)).join(" ")),
      row("iptables-restore alone, final ruleset, empty ns (3 runs)", (r) => ms(r.baseline.iptablesRestore)),
      row("ipset restore alone, final sets, empty ns (3 runs)", (r) => ms(r.baseline.ipsetRestore)),
      row("iptables-restore --noflush of one chain into that table", (r) => ms(r.baseline.oneChainRestore)),
      row("both restores together (medians summed)", (r) => fmt(median(r.baseline.iptablesRestore) + median(r.baseline.ipsetRestore))),
      row("first program / (ipset + iptables restore)", (r) => `${fmt(r.firstProgram / (median(r.baseline.iptablesRestore) + median(r.baseline.ipsetRestore)), 1)}x`),
      row("first program / iptables-restore alone", (r) => `${fmt(r.firstProgram / median(r.baseline.iptablesRestore), 1)}x`),
      row("bare nft -f of the final table, empty ns (3 runs)", (r) => ms(r.baseline.nftRestore)),
      row("first program / bare nft -f", (r) => `${fmt(r.firstProgram / median(r.baseline.nftRestore), 1)}x`),
      row("nft -j list table alone (what the driver reads)", (r) => ms(r.baseline.nftList)),
      row("iptables-save -t filter alone", (r) => ms(r.baseline.iptablesSave)),
      row("ipset list alone (what the driver reads)", (r) => ms(r.baseline.ipsetList)),
      row("ipset save alone", (r) => ms(r.baseline.ipsetSave)),
      row("ipset list -t alone (headers only, no members)", (r) => ms(r.baseline.ipsetTerse)),
      row("no-op apply, agent's code (PolicyDataplane / NftablesDataplane)", (r) => ms(r.noop.apply)),
      row("no-op apply wrote anything (must be no)", (r) => (r.noop.wrote ? "YES" : "no")),
      row(`agent CPU while idle, % of one core (${o.quietS} s)`, (r) => `${fmt(((r.quiet.cpuSelf + r.quiet.cpuChildren) / r.quiet.seconds) * 100, 1)} (node ${fmt((r.quiet.cpuSelf / r.quiet.seconds) * 100, 1)})`),
      row(`policy kernel reads while idle (${o.quietS} s; iptables-save + ipset list, or nft list)`, (r) => String(r.quiet.kernelReads)),
    ]),
  );
  out.push(
    table("First program, stages (ms after spawn, from the agent's log)", ["stage", ...modes], (results[0]?.stages ?? []).map(([label], i) => [label, ...results.map((r) => fmt(r.stages[i]?.[1] ?? NaN))])),
  );
  const stageRows = (pick: (r: ModeResult) => ChangeSample[]): string[][] => [
    row("  etcd put", (r) => ms(pick(r).map((s) => s.put))),
    row("  render starts (watch + 5 ms debounce + snapshot rebuild)", (r) => ms(opt(pick(r).map((s) => s.renderStart)))),
    row("  render (pure, whole snapshot)", (r) => ms(opt(pick(r).map((s) => s.render)))),
    row("  ipset restore done", (r) => ms(opt(pick(r).map((s) => s.ipsetsDone)))),
    row("  iptables-restore done (when chains changed)", (r) => ms(opt(pick(r).map((s) => s.iptablesDone)))),
    row("  apply done (after removeStale)", (r) => ms(opt(pick(r).map((s) => s.applyDone)))),
    row("  dataplane apply alone (agent's ms)", (r) => ms(opt(pick(r).map((s) => s.applyMs)))),
    row("  poller iterations (each ~5 ms + one ipset/iptables call)", (r) => ms(pick(r).map((s) => s.pollIterations))),
  ];
  out.push(
    table("Label change -> dataplane, stages (ms after the etcd write, from the agent's log; median / max)", ["stage", ...modes], [
      row("remote pod, seen in the kernel (poller)", (r) => ms(r.remote.map((s) => s.latency))),
      ...stageRows((r) => r.remote),
      row("local pod, seen in the kernel (poller)", (r) => ms(r.local.map((s) => s.latency))),
      ...stageRows((r) => r.local),
    ]),
  );
  out.push(
    table("Where an apply's time goes: the agent's code replayed as a no-op (ms; median / max of 3)", ["phase", ...modes], [
      row("etcd list + decode + snapshot (PolicySource, once)", (r) => fmt(r.noop.list)),
      row("render (renderPolicy, once)", (r) => fmt(r.noop.render)),
      row("ipset list, spawned + captured (runs twice per apply)", (r) => ms(r.noop.ipsetExec)),
      row("  parseIpsetList (pure; twice per apply)", (r) => ms(r.noop.ipsetParse)),
      row("  planPrepare (pure: canonicalizes every member)", (r) => ms(r.noop.ipsetPlan)),
      row("iptables-save -t filter, spawned + captured", (r) => ms(r.noop.iptablesExec)),
      row("  parseSave (pure)", (r) => ms(r.noop.iptablesParse)),
      row("  formatTable + renderTable (pure: text, sha256 per rule)", (r) => ms(r.noop.iptablesHash)),
      row("  planTable (pure: diff)", (r) => ms(r.noop.iptablesDiff)),
      row("nft -j list table, spawned + captured (nftables)", (r) => ms(r.noop.nftExec)),
      row("  parseNftTable (pure)", (r) => ms(r.noop.nftParse)),
      row("  nftTable: rules and sets as nft text (pure)", (r) => ms(r.noop.nftBuild)),
      row("  planNft (pure: diff)", (r) => ms(r.noop.nftPlan)),
      row("whole no-op apply", (r) => ms(r.noop.apply)),
      row("`ip netns exec` overhead per command (bench side)", (r) => ms(r.baseline.nsExec)),
      row("one look: iptables -S <chain> / nft list chain (nftables polls over netlink instead)", (r) => ms(r.baseline.chainPoll)),
      row("one look: ipset test / nft get element", (r) => ms(r.baseline.setPoll)),
      row("sizes: iptables-save text / ipset save text (nft: the nft -f script), KiB", (r) => (r.mode === "nftables" ? fmt(r.baseline.nftBytes / 1024) : `${fmt(r.baseline.saveBytes / 1024)} / ${fmt(r.baseline.ipsetBytes / 1024)}`)),
    ]),
  );
  return out.join("\n") + "\n";
}

// ---------------------------------------------------------------- main

async function bench(o: Options, prefix: string, dir: string, cleanup: Cleanup): Promise<void> {
  const etcdDir = join(dir, "etcd");
  const etcd = await startEtcd({ dir: etcdDir });
  cleanup.add("etcd", () => etcd.stop());
  const client = connectEtcd(etcdConnection(etcd)); // the agent's client settings
  cleanup.add("etcd client", () => client.close());
  await client.put("/coreos.com/network/config").value(JSON.stringify({ Network: NETWORK, SubnetLen: 22, SubnetMin: LOCAL_SUBNET.split("/")[0], SubnetMax: LOCAL_SUBNET.split("/")[0], Backend: { Type: "host-gw" } }));

  say(`generating ${o.pods} pods (${o.local} local), ${o.policies} policies in ${o.namespaces} namespaces`);
  const cluster = synthCluster({ namespaces: o.namespaces, pods: o.pods, localPods: o.local, policies: o.policies, remoteNodes: o.remoteNodes, localNode: NODE, localSubnet: LOCAL_SUBNET, remoteSubnet, seed: o.seed });
  const store = new EtcdResourceStore(client);
  let t = performance.now();
  const objects: KubeObject[] = [...cluster.namespaces, ...cluster.pods, ...cluster.policies];
  for (const batch of chunks(objects, 128)) await store.applyAll(batch);
  for (const batch of chunks(cluster.endpoints, 128)) {
    const puts = batch.map((r) => {
      const v = parseWorkloadEndpointRecord(r);
      if (!v.ok) throw new Error(`synthetic endpoint ${r.namespace}/${r.pod} is invalid: ${v.reason}`);
      return { request_put: { key: Buffer.from(workloadEndpointKey(r.node, r.namespace, r.pod, r.ifName)), value: Buffer.from(publishedValue(v.record, r.node)) } };
    });
    await client.kv.txn({ compare: [], success: puts, failure: [] });
  }
  const populateMs = performance.now() - t;
  say(`populated etcd in ${fmt(populateMs)} ms`);

  const listed = await listSnapshot(client);
  say(`listed ${listed.snapshot.endpoints.length} endpoints in ${fmt(listed.ms)} ms`);
  t = performance.now();
  const base = renderOf(listed.snapshot);
  const renderMs = performance.now() - t;
  say(`rendered in ${fmt(renderMs)} ms; choosing the pods to relabel`);
  const remote = pickRemoteMutation(listed.snapshot, base);
  const local = pickLocalMutation(listed.snapshot, base);
  const sizeRes = await client.maintenance.status();
  const setup: Array<[string, string]> = [
    ["cluster", `${o.pods} pods (${o.local} on ${NODE}, rest on ${o.remoteNodes} nodes), ${o.policies} NetworkPolicies, ${o.namespaces} namespaces`],
    ["etcd keys under /sluice/v1", `${objects.length + cluster.endpoints.length} (${fmt(Number(sizeRes.dbSize) / 1024 / 1024, 1)} MiB db)`],
    ["populate (EtcdResourceStore.applyAll, 128 per txn)", `${fmt(populateMs)} ms`],
    ["bench-side list + decode (PolicySource) / render", `${fmt(listed.ms)} ms / ${fmt(renderMs)} ms`],
    ["remote change", `${remote.ep.namespace}/${remote.ep.pod} on ${remote.ep.node}: tier frontend <-> backend; ${remote.sets.length} set memberships move (${[...new Set(remote.sets.map((s) => s.name))].length} sets); polled: ${remote.sets[remote.sets.length - 1]?.name}`],
    ["local change", `${local.ep.namespace}/${local.ep.pod}: track ${local.original["track"] ?? "(none)"} <-> canary; ingress policies ${local.ingressTargets.original.split(" ").filter(Boolean).length} -> ${local.ingressTargets.mutated.split(" ").filter(Boolean).length}; ${local.chains.length} chains and ${local.sets.length} set memberships change`],
    ["machine", `${(await run("nproc", [])).stdout.trim()} cores, node ${process.version}, kernel ${(await run("uname", ["-r"])).stdout.trim()}; load average at start ${loadavg().map((x) => x.toFixed(1)).join(" ")}`],
  ];
  for (const [k, v] of setup) say(`${k}: ${v}`);

  const results: ModeResult[] = [];
  for (const mode of o.modes) results.push(await runMode(mode, o, { prefix, dir, cleanup, client, etcdFlags: etcdFlags(etcd), localRecords: cluster.endpoints.filter((r) => r.node === NODE), snap: listed.snapshot, base, remote, local }));
  setup.push(["load average at the end", loadavg().map((x) => x.toFixed(1)).join(" ")]);
  process.stdout.write(report(o, setup, results));
}

async function main(): Promise<number> {
  let o: Options;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write("policyScale needs root (network namespaces, iptables, ipset)\n");
    return 2;
  }
  const prefix = `slb${process.pid.toString(36)}`;
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-"));
  const cleanup = new Cleanup();
  if (process.env["SLUICE_BENCH_KEEP"]) say(`keeping ${dir} (SLUICE_BENCH_KEEP)`);
  else cleanup.add("temp dir", () => rmSync(dir, { recursive: true, force: true }));
  const onSignal = (sig: NodeJS.Signals): void => {
    say(`${sig}: cleaning up`);
    void cleanup.runAll().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const started = Date.now();
  try {
    await bench(o, prefix, dir, cleanup);
    say(`done in ${fmt((Date.now() - started) / 1000, 1)} s`);
    return 0;
  } catch (err) {
    process.stderr.write(`policyScale failed: ${(err as Error).stack ?? String(err)}\n`);
    for (const mode of o.modes) {
      const path = join(dir, `agent-${mode}.log`);
      if (existsSync(path)) process.stderr.write(`last lines of the agent's log (${mode}):\n${readFileSync(path, "utf8").trimEnd().split("\n").slice(-15).join("\n")}\n`);
    }
    return 1;
  } finally {
    await cleanup.runAll();
    const left = (await listNetns()).filter((n) => n.startsWith(prefix));
    if (left.length) process.stderr.write(`namespaces left behind: ${left.join(", ")}\n`);
  }
}

void main().then((code) => process.exit(code));
