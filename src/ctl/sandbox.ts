/**
 * `sluicectl sandbox ...`: a cluster of network namespaces on this host. `up` leaves it
 * running (detached etcd, agents and pod servers) and records it in a state file;
 * every other subcommand loads it from there.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError } from "../config/errors.js";
import { type FlagSpec, type RawFlags, parseDuration } from "../config/flags.js";
import { run } from "../dataplane/exec.js";
import { contextsPath, recordContext, removeContexts } from "./contexts.js";
import { SANDBOX_BACKENDS, SANDBOX_POLICY_READY_TIMEOUT_MS, STATE_FILE, Sandbox, type SandboxBackend, type SandboxNode, teardown } from "../sandbox/cluster.js";
import { listNetns, sandboxNetns } from "../sandbox/netns.js";
import {
  createNamespace,
  createPod,
  deleteNamespace,
  deletePod,
  getPod,
  labelNamespace,
  labelPod,
  listNamespaces,
  listPods,
  parseLabelChanges,
  parseLabels,
  parsePodRef,
  type PodRef,
  parsePorts,
  podId,
  podObjects,
} from "../sandbox/pods.js";
import { leaseSubnets, listLeases, nodePolicyStatus, nodeSubnet, removeSandboxNode } from "../sandbox/nodes.js";
import { DEFAULT_PROBE_TIMEOUT_MS, type ProbeResult, formatPortSpec, parseProbeSpec, probe, probeFromNode, probeMatrix } from "../sandbox/probe.js";
import { addExternalHost, listExternalHosts, removeExternalHost } from "../sandbox/external.js";
import type { Io } from "./commands.js";
import { renderMatrixOutput } from "./matrixOutput.js";

export const DEFAULT_SANDBOX_STATE = join(tmpdir(), "sluice-sandbox");
export const DEFAULT_SANDBOX_PREFIX = "sluice-sb";
const SRC = "sluicectl sandbox";

export const SANDBOX_FLAGS: FlagSpec[] = [
  { name: "state-dir", kind: "string", help: "where the sandbox keeps its state file, logs and etcd", default: DEFAULT_SANDBOX_STATE },
  { name: "prefix", kind: "string", help: "up/down: name prefix of every namespace the sandbox makes", default: DEFAULT_SANDBOX_PREFIX },
  { name: "nodes", kind: "string", help: "up: number of nodes", default: "3" },
  { name: "backend", kind: "string", help: "up: vxlan, host-gw, vxlan-direct (vxlan with DirectRouting) wireguard (encrypted; wireguard-go where the kernel has no WireGuard) ipip (needs the kernel's ipip module) or udp (userspace, slow)", default: "vxlan" },
  { name: "segments", kind: "string", help: "up: L2 segments of the underlay, 1 or 2 (joined by a router)", default: "1" },
  { name: "network", kind: "string", help: "up: the cluster network", default: "10.244.0.0/16" },
  { name: "node", kind: "string", help: "pod create: the node (node-2 or 2); default: the node with the fewest pods" },
  { name: "labels", kind: "string", help: "pod/ns create: labels k=v,k2=v2" },
  { name: "ports", kind: "string", help: "pod create: served ports name=80/TCP,...", default: "serve-80-tcp=80/TCP,serve-80-udp=80/UDP,serve-81-tcp=81/TCP,serve-81-udp=81/UDP" },
  { name: "port", kind: "string", help: "probe/matrix: PORT[/TCP|UDP], or icmp", default: "80/TCP" },
  { name: "proto", kind: "string", help: "probe/matrix: TCP, UDP or ICMP (echo), when --port does not say" },
  { name: "timeout", kind: "string", help: "probe/matrix: how long one attempt may take (ms, or 2s)", default: String(DEFAULT_PROBE_TIMEOUT_MS) },
  { name: "n", kind: "list", help: "matrix: only pods of these namespaces (repeatable or comma-separated)" },
  { name: "o", kind: "string", help: "status/matrix: table or json", default: "table" },
  { name: "keep-lease", kind: "boolean", help: "node remove: leave the node's subnet lease in etcd" },
  { name: "count", kind: "string", help: "pod create: make N pods <ns>/<name>-1 ... -N, spread over the nodes", default: "1" },
  { name: "q", kind: "boolean", help: "up/pod create: no progress lines, only the result" },
];

export const SANDBOX_USAGE = `Usage:
  sluicectl sandbox up [--nodes 3] [--backend vxlan|host-gw|vxlan-direct|wireguard|ipip|udp] [--segments 1|2]
  sluicectl sandbox down
  sluicectl sandbox status [-o json]
  sluicectl sandbox node add | node remove <node> [--keep-lease] | node restart <node>
  sluicectl sandbox ns create <ns> [--labels k=v,...] | ns delete <ns>
  sluicectl sandbox pod create <ns>/<pod> [--count N] [--node K] [--labels k=v,...] [--ports serve-80-tcp=80/TCP,...] [-q]
  sluicectl sandbox pod delete <ns>/<pod>
  sluicectl sandbox label pod <ns>/<pod> k=v k2- ...  |  label ns <ns> k=v k2- ...
  sluicectl sandbox exec <ns>/<pod>|<node> -- CMD [ARG...]
  sluicectl sandbox external add | external remove <ext-N>
  sluicectl sandbox probe <ns>/<pod>|<node> <ns>/<pod>|<ip> [--port 80/TCP | --proto ICMP] [--timeout 1000]
  sluicectl sandbox matrix [--port 80/TCP | --proto ICMP] [-n ns ...] [--timeout 1000] [-o json]

An external host is a machine outside the cluster on the underlay (203.0.113.0/24),
serving 80 and 81 over TCP and UDP and answering pings: pods reach it through their
node's masquerade, so rules for external addresses can be tried with real traffic.

Everything lives in network namespaces named <prefix>-... (nothing in the host's own
namespace); every subcommand finds the sandbox through <state-dir>/${STATE_FILE}
(--state-dir, or SLUICE_STATE_DIR; default ${DEFAULT_SANDBOX_STATE}).`;

const str = (f: RawFlags, k: string): string | undefined => (typeof f[k] === "string" ? (f[k] as string) : undefined);
const stateDirOf = (f: RawFlags): string => resolve(str(f, "state-dir") ?? DEFAULT_SANDBOX_STATE);

function intFlag(f: RawFlags, name: string, def: number, min: number, max: number): number {
  const text = str(f, name);
  if (text === undefined) return def;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`--${name}`, `"${text}" must be an integer from ${min} to ${max}`, SRC);
  return n;
}

function need(args: string[], i: number, what: string): string {
  const v = args[i];
  if (v === undefined || v === "") throw new ConfigError(what, "is required (see sluicectl sandbox help)", SRC);
  return v;
}

function timeoutOf(f: RawFlags): number {
  const t = str(f, "timeout");
  if (t === undefined) return DEFAULT_PROBE_TIMEOUT_MS;
  const ms = parseDuration(t, 1);
  if (ms === undefined || ms < 1 || ms > 600_000) throw new ConfigError("--timeout", `"${t}" must be a duration such as 1000 (ms) or 2s`, SRC);
  return ms;
}

/** The sandbox command: dispatches on the first positional argument. */
export async function runSandbox(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case undefined:
    case "help":
      io.out(SANDBOX_USAGE + "\n");
      return sub ? 0 : 2;
    case "up":
      return up(flags, io);
    case "down":
      return down(flags, io);
    case "status":
      return status(flags, io);
    case "node":
      return node(flags, rest, io);
    case "ns":
    case "namespace":
      return ns(flags, rest, io);
    case "pod":
      return pod(flags, rest, io);
    case "label":
      return label(flags, rest, io);
    case "exec":
      return exec(flags, rest, io);
    case "probe":
      return probeCmd(flags, rest, io);
    case "matrix":
      return matrix(flags, rest, io);
    case "external":
      return external(flags, rest, io);
    default:
      io.err(`sluicectl sandbox: unknown subcommand "${sub}"\n\n${SANDBOX_USAGE}\n`);
      return 2;
  }
}

async function up(flags: RawFlags, io: Io): Promise<number> {
  const stateDir = stateDirOf(flags);
  const prefix = str(flags, "prefix") ?? DEFAULT_SANDBOX_PREFIX;
  if (!/^[a-z][a-z0-9-]{0,19}$/.test(prefix)) throw new ConfigError("--prefix", `"${prefix}" must be 1-20 lower-case letters, digits or '-', starting with a letter`, SRC);
  const nodes = intFlag(flags, "nodes", 3, 1, 50);
  const backend = str(flags, "backend") ?? "vxlan";
  if (!(SANDBOX_BACKENDS as readonly string[]).includes(backend)) throw new ConfigError("--backend", `"${backend}" must be one of ${SANDBOX_BACKENDS.join(", ")}`, SRC);
  const segments = intFlag(flags, "segments", 1, 1, 2) as 1 | 2;
  if (existsSync(join(stateDir, STATE_FILE))) {
    const old = Sandbox.load(stateDir);
    const why = old.etcdAlive() ? `a sandbox is already up there (${old.nodes.length} nodes, prefix ${old.o.prefix})` : "a sandbox that is no longer running left its state there";
    throw new ConfigError("--state-dir", `${stateDir}: ${why}; remove it first with: sluicectl sandbox down --state-dir ${stateDir}`, SRC);
  }
  const leftovers = sandboxNetns(prefix, await listNetns());
  if (leftovers.length) throw new ConfigError("--prefix", `namespaces named ${prefix}-... already exist (${leftovers.slice(0, 3).join(", ")}${leftovers.length > 3 ? ", ..." : ""}), from another sandbox or a crash; remove them with: sluicectl sandbox down --prefix ${prefix} --state-dir ${stateDir}, or pick another --prefix`, SRC);
  const sb = new Sandbox({ prefix, stateDir, nodes, backend: backend as SandboxBackend, segments, network: str(flags, "network") ?? "10.244.0.0/16", detached: true, policyReadyTimeoutMs: SANDBOX_POLICY_READY_TIMEOUT_MS });
  const abort = (): void => {
    void teardown(prefix, stateDir).finally(() => process.exit(130));
  };
  process.once("SIGINT", abort);
  process.once("SIGTERM", abort);
  const started = Date.now();
  try {
    io.out(`building a ${nodes}-node sandbox (backend ${backend}, ${segments} L2 segment${segments > 1 ? "s" : ""}) in namespaces ${prefix}-*\n`);
    const progress = flags["q"] === true ? undefined : (line: string): void => io.out(`  ${line}\n`);
    await sb.up(progress);
    await sb.waitAllReady(30_000, progress);
    await createNamespace(sb, "default");
  } catch (err) {
    await teardown(prefix, stateDir);
    throw err;
  } finally {
    process.removeListener("SIGINT", abort);
    process.removeListener("SIGTERM", abort);
  }
  if (flags["q"] !== true) for (const n of sb.nodes) io.out(`  ${n.name}  ${n.address}  subnet ${await nodeSubnet(n)}  agent pid ${sb.agentPid(n) ?? "-"}\n`);
  io.out(`sandbox up in ${((Date.now() - started) / 1000).toFixed(1)}s; state in ${stateDir}, etcd at ${sb.etcdEndpoint} (client certificate required: ${sb.etcdFlags().slice(2).join(" ")})\n`);
  io.out(`${recordSandboxContext(sb)}\n`);
  io.out(`next: sluicectl sandbox ns create x; sluicectl sandbox pod create x/a --node 1; sluicectl sandbox matrix\n`);
  return 0;
}

async function down(flags: RawFlags, io: Io): Promise<number> {
  const stateDir = stateDirOf(flags);
  let prefix = str(flags, "prefix") ?? DEFAULT_SANDBOX_PREFIX;
  if (existsSync(join(stateDir, STATE_FILE))) {
    try {
      prefix = Sandbox.load(stateDir).o.prefix;
    } catch {
      /* a damaged state file: go by --prefix */
    }
  }
  const namespaces = sandboxNetns(prefix, await listNetns());
  const hadState = existsSync(stateDir);
  await teardown(prefix, stateDir);
  const gone = removeContexts(contextsPath(), (c) => c.sandboxStateDir === resolve(stateDir));
  if (gone.length > 0) io.err(`removed context ${gone.map((g) => `"${g}"`).join(", ")}\n`);
  io.out(namespaces.length || hadState ? `sandbox removed: ${namespaces.length} namespaces (${prefix}-*), its processes and ${stateDir}\n` : `nothing to remove (no namespaces ${prefix}-*, no ${stateDir})\n`);
  return 0;
}

async function agentReady(n: SandboxNode): Promise<boolean> {
  const r = await run("ip", ["netns", "exec", n.ns, "curl", "-sf", "--max-time", "1", "http://127.0.0.1:9099/readyz"], undefined, 3000).catch(() => ({ code: 1 }));
  return r.code === 0;
}

const fmtLabels = (l: Record<string, string> | undefined): string =>
  Object.entries(l ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",") || "-";

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 2))).join("").trimEnd()).join("\n") + "\n";
}

async function status(flags: RawFlags, io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const etcdUp = sb.etcdAlive();
  const nodes = await Promise.all(
    sb.nodes.map(async (n) => {
      const pid = sb.agentPid(n);
      const policy = nodePolicyStatus(n);
      return { name: n.name, netns: n.ns, address: n.address, segment: n.segment, subnet: await nodeSubnet(n), agentPid: pid ?? null, ready: pid ? await agentReady(n) : false, policy: policy ? { revision: policy.revision, appliedAt: policy.appliedAt } : null };
    }),
  );
  let leases: Array<{ subnet: string; node: string; publicIp: string; backend: string }> = [];
  let namespaces: Array<{ name: string; labels: Record<string, string> }> = [];
  const labelsOf = new Map<string, Record<string, string>>();
  if (etcdUp) {
    leases = (await listLeases(sb)).map((l) => ({ subnet: leaseSubnets(l), node: l.attrs.NodeName ?? "-", publicIp: l.attrs.PublicIP || "-", backend: l.attrs.BackendType || "-" }));
    namespaces = (await listNamespaces(sb)).map((n) => ({ name: n.metadata.name, labels: n.metadata.labels ?? {} }));
    for (const p of await podObjects(sb)) labelsOf.set(`${p.metadata.namespace}/${p.metadata.name}`, p.metadata.labels ?? {});
  }
  const pods = listPods(sb).map((p) => ({ pod: podId(p), node: p.node, ips: p.ips, hostIface: p.hostIface, netns: p.netns, serverPid: p.serverPid, labels: labelsOf.get(podId(p)) ?? {} }));
  const externals = listExternalHosts(sb).map((h) => ({ name: h.name, address: h.address, netns: h.ns, ports: h.ports.map((p) => `${p.port}/${p.protocol}`) }));
  if (str(flags, "o") === "json") {
    io.out(JSON.stringify({ prefix: sb.o.prefix, stateDir: sb.o.stateDir, backend: sb.o.backend, segments: sb.o.segments, etcd: { endpoint: sb.etcd?.endpoint, pid: sb.etcd?.pid, running: etcdUp, tls: sb.etcd?.tls }, nodes, leases, namespaces, pods, externals }, null, 2) + "\n");
    return 0;
  }
  io.out(`sandbox ${sb.o.prefix}: backend ${sb.o.backend}, ${sb.o.segments} segment(s), state ${sb.o.stateDir}\netcd: ${sb.etcd?.endpoint ?? "-"} (${etcdUp ? `pid ${sb.etcd?.pid}` : "NOT RUNNING"}${sb.etcd ? `; clients need the certificate ${sb.etcd.tls.certFile}` : ""})\n\nNODES\n`);
  // POLICY: the datastore revision each agent has in force, so a change can be followed node by node.
  io.out(table([["NAME", "NETNS", "ADDRESS", "SEGMENT", "SUBNET", "AGENT", "POLICY"], ...nodes.map((n) => [n.name, n.netns, n.address, String(n.segment), n.subnet, n.agentPid ? `pid ${n.agentPid} ${n.ready ? "ready" : "NOT READY"}` : "NOT RUNNING", n.policy ? `revision ${n.policy.revision}` : "-"])]));
  io.out(`\nLEASES\n`);
  io.out(table([["SUBNET", "NODE", "PUBLIC-IP", "BACKEND"], ...leases.map((l) => [l.subnet, l.node, l.publicIp, l.backend])]));
  io.out(`\nNAMESPACES\n`);
  io.out(table([["NAME", "LABELS"], ...namespaces.map((n) => [n.name, fmtLabels(n.labels)])]));
  io.out(`\nPODS\n`);
  io.out(table([["POD", "NODE", "IP", "HOST-IFACE", "LABELS"], ...pods.map((p) => [p.pod, p.node, p.ips.join(",") || "-", p.hostIface, fmtLabels(p.labels)])]));
  if (externals.length) {
    io.out(`\nEXTERNAL HOSTS\n`);
    io.out(table([["NAME", "ADDRESS", "NETNS", "SERVING"], ...externals.map((h) => [h.name, h.address, h.netns, h.ports.join(",")])]));
  }
  return 0;
}

async function node(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const action = need(args, 0, "node add|remove|restart");
  if (action === "add") {
    const n = await sb.addNode();
    await sb.waitReady(n);
    io.out(`${n.name} added: ${n.address} (segment ${n.segment}), subnet ${await nodeSubnet(n)}, agent pid ${sb.agentPid(n) ?? "-"}\n`);
    return 0;
  }
  const n = sb.nodeByName(need(args, 1, "NODE"));
  if (action === "remove") {
    const r = await removeSandboxNode(sb, n.name, { keepLease: flags["keep-lease"] === true });
    for (const w of r.warnings) io.err(`warning: ${w}\n`);
    io.out(`${n.name} removed${r.pods.length ? ` with its pods ${r.pods.join(", ")}` : ""}; ${r.leases.length ? `lease ${r.leases.join(", ")} deleted` : "no lease deleted"}\n`);
    return 0;
  }
  if (action === "restart") {
    await sb.stopAgent(n);
    await sb.startAgent(n);
    await sb.waitReady(n);
    io.out(`${n.name}: agent restarted (pid ${sb.agentPid(n) ?? "-"}) and ready\n`);
    return 0;
  }
  throw new ConfigError("node", `"${action}" must be add, remove or restart`, SRC);
}

async function ns(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const action = need(args, 0, "ns create|delete");
  const name = need(args, 1, "NAMESPACE");
  if (action === "create") {
    const obj = await createNamespace(sb, name, parseLabels(str(flags, "labels") ?? ""));
    io.out(`namespace ${name} created (labels ${fmtLabels(obj.metadata.labels)})\n`);
    return 0;
  }
  if (action === "delete") {
    await deleteNamespace(sb, name);
    io.out(`namespace ${name} deleted\n`);
    return 0;
  }
  throw new ConfigError("ns", `"${action}" must be create or delete`, SRC);
}

async function pod(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const action = need(args, 0, "pod create|delete");
  const ref = parsePodRef(need(args, 1, "POD (ns/name)"));
  if (action === "create") {
    const nodeFlag = str(flags, "node");
    const fixedNode = nodeFlag !== undefined ? sb.nodeByName(nodeFlag).name : undefined;
    const count = intFlag(flags, "count", 1, 1, 1000);
    const labels = parseLabels(str(flags, "labels") ?? "");
    const ports = parsePorts(str(flags, "ports") ?? SANDBOX_FLAGS.find((s) => s.name === "ports")?.default ?? "");
    const refs = count === 1 ? [ref] : Array.from({ length: count }, (_, i) => ({ ...ref, name: `${ref.name}-${i + 1}` }));
    const quiet = flags["q"] === true;
    const started = Date.now();
    for (const [i, r] of refs.entries()) {
      // Default placement: the node with the fewest pods, so --count spreads them.
      const podsOn = (n: SandboxNode): number => listPods(sb).filter((p) => p.node === n.name).length;
      const least = [...sb.nodes].sort((a, b) => podsOn(a) - podsOn(b) || a.index - b.index)[0];
      if (!fixedNode && !least) throw new ConfigError("--node", "the sandbox has no nodes", SRC);
      const p = await createPod(sb, { ...r, node: fixedNode ?? (least as SandboxNode).name, labels, ports });
      const served = p.ports.map((x) => `${x.name ? x.name + "=" : ""}${x.containerPort}/${x.protocol}`).join(", ") || "nothing";
      if (count === 1) io.out(`pod ${podId(p)} created on ${p.node}: ${p.ips.join(", ")} (host interface ${p.hostIface}; serving ${served})\n`);
      else if (!quiet) io.out(`  pod ${podId(p)} created on ${p.node}: ${p.ips.join(", ")} [${i + 1}/${count}]\n`);
    }
    if (count > 1) io.out(`${count} pods created (${podId(refs[0] as PodRef)} ... ${podId(refs[count - 1] as PodRef)}) in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
    return 0;
  }
  if (action === "delete") {
    for (const w of await deletePod(sb, ref)) io.err(`warning: ${w}\n`);
    io.out(`pod ${podId(ref)} deleted\n`);
    return 0;
  }
  throw new ConfigError("pod", `"${action}" must be create or delete`, SRC);
}

async function label(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const kind = need(args, 0, "label pod|ns");
  const target = need(args, 1, kind === "pod" ? "POD" : "NAMESPACE");
  const changes = parseLabelChanges(args.slice(2));
  if (kind === "pod") {
    const labels = await labelPod(sb, target, changes);
    io.out(`pod ${podId(parsePodRef(target))} labels: ${fmtLabels(labels)}\n`);
    return 0;
  }
  if (kind === "ns" || kind === "namespace") {
    const labels = await labelNamespace(sb, target, changes);
    io.out(`namespace ${target} labels: ${fmtLabels(labels)}\n`);
    return 0;
  }
  throw new ConfigError("label", `"${kind}" must be pod or ns`, SRC);
}

async function exec(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const target = need(args, 0, "POD or NODE");
  const cmd = args.slice(1);
  if (cmd.length === 0) throw new ConfigError("CMD", "is required: sluicectl sandbox exec <ns>/<pod> -- CMD [ARG...]", SRC);
  const asNode = !target.includes("/") ? sb.nodes.find((n) => n.name === target) : undefined;
  const netns = asNode ? asNode.ns : getPod(sb, target).netns;
  return new Promise((resolvePromise) => {
    const child = spawn("ip", ["netns", "exec", netns, ...cmd], { stdio: "inherit" });
    child.on("error", (err) => {
      io.err(`${err.message}\n`);
      resolvePromise(1);
    });
    child.on("close", (code, signal) => resolvePromise(code ?? (signal ? 128 : 1)));
  });
}

async function probeCmd(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const from = need(args, 0, "FROM (ns/pod or node)");
  const to = need(args, 1, "TO (ns/pod or address)");
  const { port, protocol } = parseProbeSpec(str(flags, "port"), str(flags, "proto"));
  const timeoutMs = timeoutOf(flags);
  const fromNode = !from.includes("/") ? sb.nodes.find((n) => n.name === from) : undefined;
  const r = fromNode ? ((await probeFromNode(sb, fromNode.name, [to], { port, protocol, timeoutMs }))[0] as ProbeResult) : await probe(sb, from, to, { port, protocol, timeoutMs });
  const what = `${r.from} -> ${r.to === r.host ? r.host : `${r.to} (${r.host})`} ${formatPortSpec({ port, protocol })}`;
  if (str(flags, "o") === "json") io.out(JSON.stringify(r) + "\n");
  else io.out(r.connected ? `connected: ${what} in ${r.ms} ms\n` : `blocked: ${what}: ${r.status}${r.status === "timeout" ? ` after ${timeoutMs} ms` : ""}\n`);
  return r.connected ? 0 : 1;
}

async function matrix(flags: RawFlags, _args: string[], io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const { port, protocol } = parseProbeSpec(str(flags, "port"), str(flags, "proto"));
  const nsList = namespacesFlag(flags);
  const pods = listPods(sb).filter((p) => nsList.length === 0 || nsList.includes(p.namespace));
  if (pods.length === 0) throw new ConfigError(nsList.length ? "-n" : "POD", nsList.length ? `no pods in namespace(s) ${nsList.join(", ")}` : "the sandbox has no pods (create some with: sluicectl sandbox pod create x/a)", SRC);
  const m = await probeMatrix(sb, pods, { port, protocol, timeoutMs: timeoutOf(flags) });
  io.out(renderMatrixOutput({ port, protocol, pods: m.pods, reachability: m.reachability }, { json: str(flags, "o") === "json", yes: "connected", no: "blocked", summaryTail: ` (${m.ms} ms)`, extra: { results: m.results, ms: m.ms } }));
  return 0;
}

/** `-n a -n b,c` -> [a, b, c]. */
export function namespacesFlag(flags: RawFlags): string[] {
  return ((flags["n"] as string[] | undefined) ?? []).flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean);
}

async function external(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const sb = Sandbox.load(stateDirOf(flags));
  const action = need(args, 0, "external add|remove");
  if (action === "add") {
    const h = await addExternalHost(sb);
    io.out(`external host ${h.name} added: ${h.address} (namespace ${h.ns}; serving ${h.ports.map((p) => `${p.port}/${p.protocol}`).join(", ")})\n`);
    return 0;
  }
  if (action === "remove") {
    const ref = need(args, 1, "EXTERNAL (ext-N)");
    await removeExternalHost(sb, ref);
    io.out(`external host ${ref} removed\n`);
    return 0;
  }
  throw new ConfigError("external", `"${action}" must be add or remove`, SRC);
}

/**
 * Records the sandbox's etcd as sluicectl's current context `sandbox-<prefix>` (what
 * `sandbox down` removes again); returns the line that says so.
 */
export function recordSandboxContext(sb: Sandbox): string {
  const c = sb.etcdConnection();
  const name = `sandbox-${sb.o.prefix}`;
  const path = contextsPath();
  recordContext(path, { name, etcdEndpoints: c.endpoints.join(","), etcdCafile: c.caFile, etcdCertfile: c.certFile, etcdKeyfile: c.keyFile, sandboxStateDir: resolve(sb.o.stateDir) });
  return `current context: ${name} (in ${path}): sluicectl apply, get, delete, explain and leases use this etcd without flags`;
}
