/**
 * Real connection attempts between sandbox pods, and the connectivity matrix the demo
 * prints and the e2e tests compare with a hand-written expectation.
 *
 * Every probe is made from inside the source pod by the pod's own server process (asked
 * over its control socket), so a matrix costs no process start at all: each source pod
 * tries all its targets in parallel, all sources at once, and a matrix with blocked pairs
 * takes about one timeout.
 */
import { existsSync } from "node:fs";
import { isIP } from "node:net";
import { ConfigError } from "../config/errors.js";
import { kernelHasSctp } from "../dataplane/capabilities.js";
import type { ConnectionProtocol } from "../policy/evaluate.js";
import type { Sandbox, SandboxNode } from "./cluster.js";
import { nodeServerSocket } from "./nodes.js";
import { type PodRef, type SandboxPod, getPod, listPods, parsePodRef, podId } from "./pods.js";
import { type PodStream, type ProbeOutcome, type ProbeTarget, ctlRequest, openStream, probeFromNetns } from "./podServer.js";

export type ProbeProtocol = "TCP" | "UDP" | "SCTP" | "ICMP";

export interface ProbeOptions {
  port: number;
  /** Default TCP. */
  protocol?: ProbeProtocol;
  /** How long one attempt may take; a blocked pair costs this much. Default 1000. */
  timeoutMs?: number;
}

export interface ProbeResult extends ProbeOutcome {
  /** "ns/name" of the source pod. */
  from: string;
  /** "ns/name" of the target pod, or the address when the target was an address. */
  to: string;
  host: string;
  port: number;
  protocol: ProbeProtocol;
  connected: boolean;
}

/** reachability[from][to] = true when `from` connected to `to`. Keys are "ns/name". */
export type Reachability = Record<string, Record<string, boolean>>;

export interface MatrixResult {
  port: number;
  protocol: ProbeProtocol;
  pods: string[];
  reachability: Reachability;
  results: ProbeResult[];
  /** Wall time of the whole matrix. */
  ms: number;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 1000;

/** What a connection is made of besides its ends: TCP/UDP/SCTP and a port, or ICMP (echo; port 0). */
export interface ConnectionSpec<P extends string = ConnectionProtocol> {
  port: number;
  protocol: P;
}

/**
 * `--port` and `--proto` text -> protocol and port: `80` (TCP), `80/TCP`, `53/udp`,
 * `icmp`; `--proto` names the protocol when the port does not (`--port 53 --proto UDP`,
 * `--proto ICMP`). Nothing given: 80/TCP. Shared by `sandbox probe/matrix` and `explain`.
 */
export function parseConnectionSpec(portText: string | undefined, protoText: string | undefined, source: string): ConnectionSpec {
  const proto = protoText?.trim().toUpperCase();
  if (proto !== undefined && !["TCP", "UDP", "SCTP", "ICMP"].includes(proto)) throw new ConfigError("--proto", `"${protoText}" must be TCP, UDP, SCTP or ICMP`, source);
  const text = portText?.trim();
  if (proto === "ICMP" || text?.toUpperCase() === "ICMP") {
    if (text !== undefined && text.toUpperCase() !== "ICMP") throw new ConfigError("--port", `"${portText}": ICMP has no port (give --proto ICMP alone, or --port icmp)`, source);
    if (proto !== undefined && proto !== "ICMP") throw new ConfigError("--proto", `"${protoText}" conflicts with --port ${portText}`, source);
    return { port: 0, protocol: "ICMP" };
  }
  const m = /^(\d+)(?:\/([A-Za-z]+))?$/.exec(text ?? "80");
  const port = m ? Number(m[1]) : NaN;
  const inPort = m?.[2]?.toUpperCase();
  if (!m || port < 1 || port > 65535) throw new ConfigError("--port", `"${portText}" must be PORT[/TCP|UDP|SCTP] (1-65535) or icmp`, source);
  if (inPort !== undefined && !["TCP", "UDP", "SCTP"].includes(inPort)) throw new ConfigError("--port", `"${portText}": the protocol must be TCP, UDP or SCTP`, source);
  if (inPort !== undefined && proto !== undefined && inPort !== proto) throw new ConfigError("--proto", `"${protoText}" conflicts with --port ${portText}`, source);
  return { port, protocol: (inPort ?? proto ?? "TCP") as ConnectionProtocol };
}

/**
 * parseConnectionSpec for real probes: SCTP only where the kernel has SCTP sockets (pods
 * then serve their SCTP ports too); elsewhere an SCTP probe could only ever time out.
 */
export function parseProbeSpec(portText: string | undefined, protoText: string | undefined, source = "sluicectl sandbox", hasSctp = kernelHasSctp()): ConnectionSpec<ProbeProtocol> {
  const s = parseConnectionSpec(portText, protoText, source);
  if (s.protocol === "SCTP" && !hasSctp) {
    throw new ConfigError(protoText !== undefined ? "--proto" : "--port", "SCTP cannot be probed here: this kernel has no SCTP sockets (TCP, UDP and ICMP can)", source);
  }
  return { port: s.port, protocol: s.protocol };
}

/** `80/TCP`, `53/UDP`, `ICMP`: how messages name a connection's protocol and port. */
export const formatPortSpec = (s: ConnectionSpec<string>): string => (s.protocol === "ICMP" ? "ICMP" : `${s.port}/${s.protocol}`);

const ref = (p: string | PodRef | SandboxPod): string => (typeof p === "string" ? podId(parsePodRef(p)) : podId(p));

/** The address to connect to for a target: an IP as given, or a pod's (IPv4 first). */
function targetHost(sb: Sandbox, to: string | PodRef | SandboxPod): { to: string; host: string } {
  if (typeof to === "string" && isIP(to)) return { to, host: to };
  const pod = typeof to !== "string" && "ips" in to ? to : getPod(sb, to);
  const host = pod.ips[0];
  if (!host) throw new Error(`pod ${podId(pod)} has no address`);
  return { to: podId(pod), host };
}

async function probeFrom(from: SandboxPod, targets: Array<{ to: string; host: string }>, o: ProbeOptions): Promise<ProbeResult[]> {
  const protocol = o.protocol ?? "TCP";
  const timeoutMs = o.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const req: ProbeTarget[] = targets.map((t) => ({ host: t.host, port: o.port, protocol }));
  // SCTP probes start a python3 helper each, which takes a while on a slow (emulated) CPU.
  const slack = protocol === "SCTP" ? 40_000 : 10_000;
  const { results } = await ctlRequest<{ results: ProbeOutcome[] }>(from.ctlSocket, { op: "probe", targets: req, timeoutMs }, timeoutMs + slack);
  return targets.map((t, i) => {
    const r = results[i] ?? { status: "error" as const, ms: 0, detail: "no result" };
    return { ...r, from: podId(from), to: t.to, host: t.host, port: o.port, protocol, connected: r.status === "connected" };
  });
}

/**
 * The node's host-network server (serveOnNode), when one runs, probes from the node's
 * namespace as a process started there would, without the process start (half a second).
 * undefined when none answers.
 */
async function askNodeServer(sb: Sandbox, n: SandboxNode, targets: ProbeTarget[], timeoutMs: number): Promise<ProbeOutcome[] | undefined> {
  const socket = nodeServerSocket(sb, n);
  if (!existsSync(socket)) return undefined;
  try {
    return (await ctlRequest<{ results: ProbeOutcome[] }>(socket, { op: "probe", targets, timeoutMs }, timeoutMs + 10_000)).results;
  } catch {
    return undefined;
  }
}

/**
 * Connection attempts from a node's own namespace (host-network traffic, as the kubelet's
 * probes), to pods or addresses, in parallel. `from` in the results is the node name.
 */
export async function probeFromNode(sb: Sandbox, node: string | number, to: ReadonlyArray<string | PodRef>, o: ProbeOptions): Promise<ProbeResult[]> {
  const n = sb.nodeByName(String(node));
  const protocol = o.protocol ?? "TCP";
  const timeoutMs = o.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const targets = to.map((t) => targetHost(sb, t));
  const req = targets.map((t) => ({ host: t.host, port: o.port, protocol }));
  const results = (await askNodeServer(sb, n, req, timeoutMs)) ?? (await probeFromNetns(n.ns, req, timeoutMs));
  return targets.map((t, i) => {
    const r = results[i] ?? { status: "error" as const, ms: 0, detail: "no result" };
    return { ...r, from: n.name, to: t.to, host: t.host, port: o.port, protocol, connected: r.status === "connected" };
  });
}

/** One real connection attempt from a pod to a pod ("ns/name") or an address. */
export async function probe(sb: Sandbox, from: string | PodRef, to: string | PodRef, o: ProbeOptions): Promise<ProbeResult> {
  const [r] = await probeEach(sb, from, [to], o);
  return r as ProbeResult;
}

/** Connection attempts from one pod to each target, in parallel, asked of the pod's server in one request; results in the targets' order. */
export function probeEach(sb: Sandbox, from: string | PodRef, to: ReadonlyArray<string | PodRef>, o: ProbeOptions): Promise<ProbeResult[]> {
  return probeFrom(getPod(sb, from), to.map((t) => targetHost(sb, t)), o);
}

/**
 * Probes every ordered pair of `pods` (default: every pod of the sandbox, sorted),
 * including each pod to itself (to its own address), concurrently.
 */
export async function probeMatrix(sb: Sandbox, pods: ReadonlyArray<string | PodRef> | undefined, o: ProbeOptions): Promise<MatrixResult> {
  const start = Date.now();
  const list = pods ? pods.map((p) => getPod(sb, p)) : listPods(sb);
  const targets = list.map((p) => targetHost(sb, p));
  const rows = await Promise.all(list.map((from) => probeFrom(from, targets, o)));
  const ids = list.map(podId);
  const reachability: Reachability = {};
  for (const [i, row] of rows.entries()) {
    const r: Record<string, boolean> = {};
    for (const res of row) r[res.to] = res.connected;
    reachability[ids[i] as string] = r;
  }
  return { port: o.port, protocol: o.protocol ?? "TCP", pods: ids, reachability, results: rows.flat(), ms: Date.now() - start };
}

/** An expected matrix: every pair allowed (true), none (false), or as `allowed` says. */
export function reachability(pods: ReadonlyArray<string | PodRef>, allowed: boolean | ((from: string, to: string) => boolean)): Reachability {
  const ids = pods.map(ref);
  const out: Reachability = {};
  for (const f of ids) {
    const row: Record<string, boolean> = {};
    for (const t of ids) row[t] = typeof allowed === "boolean" ? allowed : allowed(f, t);
    out[f] = row;
  }
  return out;
}

/** The pairs where `actual` differs from `expected`, one line each; [] when they agree. */
export function diffReachability(expected: Reachability, actual: Reachability): string[] {
  const out: string[] = [];
  const froms = [...new Set([...Object.keys(expected), ...Object.keys(actual)])];
  for (const f of froms) {
    const tos = [...new Set([...Object.keys(expected[f] ?? {}), ...Object.keys(actual[f] ?? {})])];
    for (const t of tos) {
      const e = expected[f]?.[t];
      const a = actual[f]?.[t];
      if (e === a) continue;
      const word = (v: boolean | undefined): string => (v === undefined ? "not probed" : v ? "connected" : "blocked");
      out.push(`${f} -> ${t}: expected ${word(e)}, got ${word(a)}`);
    }
  }
  return out;
}

/**
 * Probes the matrix of `expected`'s pods until it matches (policy takes a moment to
 * land) or `withinMs` passes; returns the last matrix and its differences.
 */
export async function waitForReachability(sb: Sandbox, expected: Reachability, o: ProbeOptions & { withinMs?: number }): Promise<{ matrix: MatrixResult; diff: string[] }> {
  const deadline = Date.now() + (o.withinMs ?? 10_000);
  const pods = Object.keys(expected);
  for (;;) {
    const matrix = await probeMatrix(sb, pods, o);
    const diff = diffReachability(expected, matrix.reachability);
    if (diff.length === 0 || Date.now() > deadline) return { matrix, diff };
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * The matrix as a grid: rows connect to columns; `.` connected, `X` blocked (the marks
 * upstream's network policy e2e prints). With `expected`, a wrong cell shows as `!`
 * followed by what was observed.
 */
export function formatMatrix(m: { pods: readonly string[]; reachability: Reachability }, opts: { expected?: Reachability; connected?: string; blocked?: string } = {}): string {
  const yes = opts.connected ?? ".";
  const no = opts.blocked ?? "X";
  const w = Math.max(...m.pods.map((p) => p.length), 4) + 2;
  const cw = Math.max(...m.pods.map((p) => p.length), yes.length + 1, no.length + 1) + 2;
  const lines = ["".padEnd(w) + m.pods.map((p) => p.padStart(cw)).join("")];
  for (const f of m.pods) {
    let line = f.padEnd(w);
    for (const t of m.pods) {
      const a = m.reachability[f]?.[t];
      const mark = a === undefined ? "?" : a ? yes : no;
      const e = opts.expected?.[f]?.[t];
      line += (e !== undefined && e !== a ? `!${mark}` : mark).padStart(cw);
    }
    lines.push(line);
  }
  return lines.join("\n") + "\n";
}

/** A long-lived TCP connection from inside pod `from` to `to` (pod or address) on `port`. */
export async function openPodStream(sb: Sandbox, from: string | PodRef, to: string | PodRef, port: number, timeoutMs = 5000): Promise<PodStream> {
  const src = getPod(sb, from);
  const { host } = targetHost(sb, to);
  return openStream(src.ctlSocket, host, port, timeoutMs);
}
