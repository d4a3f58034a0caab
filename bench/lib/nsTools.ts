/**
 * Measuring helpers for benchmarks that run real processes in network namespaces:
 * timed commands inside a namespace (timed by the namespace's own shell, so the figure
 * leaves out our spawn overhead), pollers that run inside the namespace and report the
 * wall-clock moment a condition first held, dataplane counts, process memory and CPU.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../src/sandbox/paths.js";
import { run } from "../../src/dataplane/exec.js";
import { isOwnedChain } from "../../src/render/ruleset.js";
import { isOwnedIpset } from "../../src/render/ipsetSpec.js";
import type { NftCondition } from "./nftPoll.js";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs a shell script inside `ns`; throws with its stderr on failure. */
export async function nsSh(ns: string, script: string, input?: string, timeoutMs = 120_000): Promise<string> {
  const r = await run("ip", ["netns", "exec", ns, "sh", "-c", script], input, timeoutMs);
  if (r.code !== 0) throw new Error(`in ${ns}: sh -c '${script.slice(0, 200)}' failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Single-quotes a word for sh. */
export const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Wall time of `cmd` (a shell command line) inside `ns`, measured by the shell around it
 * with `date +%s%N` (about 1 ms of its own). stdin from `inputFile` when given.
 */
export async function timeInNs(ns: string, cmd: string): Promise<number> {
  const out = await nsSh(ns, `s=$(date +%s%N); ${cmd} >/dev/null; e=$(date +%s%N); echo $s $e`);
  const [s, e] = out.trim().split(/\s+/).map(Number) as [number, number];
  return (e - s) / 1e6;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export const max = (xs: readonly number[]): number => (xs.length ? Math.max(...xs) : NaN);

/** The nearest-rank percentile (p in 0..100); with few samples p99 is the maximum, as it should be. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

/**
 * A poller inside `ns`: a shell loop that evaluates `cond` (a shell condition) every
 * `stepMs`, and prints the epoch time in ms (fractional) when it first holds. `armed`
 * resolves once the poller has seen the condition false (so a change made afterwards is
 * timed from its start), or rejects if the condition already holds.
 */
export interface Poller {
  armed: Promise<void>;
  /** Epoch ms at which the condition was first seen true. */
  done: Promise<number>;
  /** How many times the condition was evaluated. */
  iterations: () => number;
  kill(): void;
}

export function pollInNs(ns: string, cond: string, stepMs = 5, timeoutMs = 60_000): Poller {
  const script = [
    `if ${cond}; then echo already; exit 3; fi`,
    "echo armed",
    "n=0",
    `until ${cond}; do n=$((n+1)); sleep ${(stepMs / 1000).toFixed(3)}; done`,
    "t=$(date +%s%N)",
    'echo "done $t $n"',
  ].join("\n");
  return pollProcess(["netns", "exec", ns, "sh", "-c", script], cond, timeoutMs);
}

/** The nftables poller (nftPoll.ts: nfnetlink, one process) with pollInNs's protocol. */
export function pollNftInNs(ns: string, cond: NftCondition, timeoutMs = 60_000): Poller {
  const script = join(packageRoot(), "build", "bench", "lib", "nftPoll.js");
  return pollProcess(["netns", "exec", ns, process.execPath, script, JSON.stringify(cond)], JSON.stringify(cond), timeoutMs);
}

/** Runs `ip <args>`, a poller that prints "armed", then "done <epoch ns> <iterations>" (or "already" and exits). */
function pollProcess(args: string[], cond: string, timeoutMs: number): Poller {
  const child: ChildProcess = spawn("ip", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  let iterations = 0;
  let armedResolve: () => void = () => undefined;
  let armedReject: (e: Error) => void = () => undefined;
  const armed = new Promise<void>((res, rej) => {
    armedResolve = res;
    armedReject = rej;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
    if (out.includes("armed")) armedResolve();
  });
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const done = new Promise<number>((resolve, reject) => {
    child.on("close", (code) => {
      clearTimeout(timer);
      const m = /done (\d+) (\d+)/.exec(out);
      if (m) {
        iterations = Number(m[2]);
        resolve(Number(m[1]) / 1e6);
        return;
      }
      const e = new Error(out.includes("already") ? `poller: condition already true before the change: ${cond}` : `poller exited ${code} without an answer (timeout ${timeoutMs} ms?): ${err.trim()}`);
      armedReject(e);
      reject(e);
    });
  });
  done.catch(() => undefined);
  armed.catch(() => undefined);
  return { armed, done, iterations: () => iterations, kill: () => child.kill("SIGKILL") };
}

export interface RuleCounts {
  /** Our chains (SLUICE-*, slc-*). */
  chains: number;
  /** -A lines in our chains. */
  rules: number;
  /** Our jump rules in built-in chains. */
  hooks: number;
  /** All -A lines in the table. */
  totalRules: number;
}

export function countRules(save: string): RuleCounts {
  let chains = 0;
  let rules = 0;
  let hooks = 0;
  let totalRules = 0;
  for (const line of save.split("\n")) {
    if (line.startsWith(":")) {
      if (isOwnedChain(line.slice(1).split(" ")[0] as string)) chains++;
    } else if (line.startsWith("-A ")) {
      totalRules++;
      const chain = line.slice(3).split(" ")[0] as string;
      if (isOwnedChain(chain)) rules++;
      else if (line.includes('--comment "sluice:') || line.includes("--comment sluice:")) hooks++;
    }
  }
  return { chains, rules, hooks, totalRules };
}

export interface IpsetCounts {
  sets: number;
  members: number;
  byType: Record<string, number>;
  /** Largest set's member count. */
  largest: number;
}

/** Counts our sets and their members from `ipset save` output. */
export function countIpsets(save: string): IpsetCounts {
  const per = new Map<string, number>();
  const byType: Record<string, number> = {};
  for (const line of save.split("\n")) {
    const w = line.split(" ");
    if (w[0] === "create" && isOwnedIpset(w[1] ?? "")) {
      per.set(w[1] as string, 0);
      byType[w[2] as string] = (byType[w[2] as string] ?? 0) + 1;
    } else if (w[0] === "add" && per.has(w[1] ?? "")) per.set(w[1] as string, (per.get(w[1] as string) as number) + 1);
  }
  const counts = [...per.values()];
  return { sets: per.size, members: counts.reduce((a, b) => a + b, 0), byType, largest: counts.length ? Math.max(...counts) : 0 };
}

export interface ProcMemory {
  rssMiB: number;
  hwmMiB: number;
}

export function procMemory(pid: number): ProcMemory {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rssMiB: kb("VmRSS") / 1024, hwmMiB: kb("VmHWM") / 1024 };
}

/** CPU seconds of a process, its own and that of its waited-for children (iptables, ipset). */
export function procCpu(pid: number): { self: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields after the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14).
  const tick = 100; // USER_HZ on Linux
  const f = (i: number): number => Number(fields[i]) / tick;
  return { self: f(11) + f(12), children: f(13) + f(14) };
}

/**
 * The pid of the node process behind `ip netns exec <ns> node ...`: `ip` execs the command
 * in place (same pid), but look one level down in case a wrapper forked.
 */
export function nodePidOf(pid: number): number {
  const isNode = (p: number): boolean => {
    try {
      return readlinkSync(`/proc/${p}/exe`) === process.execPath || readFileSync(`/proc/${p}/comm`, "utf8").trim() === "node";
    } catch {
      return false;
    }
  };
  if (isNode(pid)) return pid;
  try {
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).map(Number)) if (isNode(c)) return c;
  } catch {
    /* gone */
  }
  throw new Error(`no node process at or under pid ${pid}`);
}

/** One pino record. */
export interface LogRecord {
  time: number;
  level: number;
  msg: string;
  [k: string]: unknown;
}

export function readLog(path: string): LogRecord[] {
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  const out: LogRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as LogRecord);
    } catch {
      /* a line being written */
    }
  }
  return out;
}

/**
 * Waits until a log record satisfies `pred`; throws after `timeoutMs`, early on a fatal
 * record, or as soon as `gone()` returns a reason (e.g. the process exited).
 */
export async function waitForLog(path: string, pred: (r: LogRecord) => boolean, timeoutMs: number, gone: () => string | undefined = () => undefined, stepMs = 10): Promise<LogRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = gone();
    if (why) throw new Error(why);
    const recs = readLog(path);
    const hit = recs.find(pred);
    if (hit) return hit;
    const fatal = recs.find((r) => r.level >= 60);
    if (fatal) throw new Error(`agent failed: ${fatal.msg} ${JSON.stringify(fatal)}`);
    if (Date.now() > deadline) throw new Error(`no matching log record within ${timeoutMs} ms; last: ${recs.slice(-3).map((r) => r.msg).join(" | ")}`);
    await sleep(stepMs);
  }
}
