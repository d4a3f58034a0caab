/** Thin helpers over `ip` for the sandbox and the kernel tests: namespaces, links, commands inside. */
import { run, runOk } from "../dataplane/exec.js";

export const ip = (...args: string[]): Promise<string> => runOk("ip", args);

export function nsExec(ns: string, cmd: string, args: readonly string[], input?: string): Promise<string> {
  return runOk("ip", ["netns", "exec", ns, cmd, ...args], input);
}

export function nsTry(ns: string, cmd: string, args: readonly string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return run("ip", ["netns", "exec", ns, cmd, ...args], undefined, timeoutMs);
}

export async function listNetns(): Promise<string[]> {
  const out = await run("ip", ["netns", "list"]);
  return out.stdout
    .split("\n")
    .map((l) => l.split(" ")[0] as string)
    .filter(Boolean);
}

export async function addNetns(name: string): Promise<void> {
  await ip("netns", "add", name);
  await ip("-n", name, "link", "set", "lo", "up");
}

export async function delNetns(name: string): Promise<void> {
  await run("ip", ["netns", "del", name]);
}

/** PIDs of processes whose network namespace is `name` (so they can be stopped before it is deleted). */
export async function netnsPids(name: string): Promise<number[]> {
  const out = await run("ip", ["netns", "pids", name]);
  return out.stdout
    .split("\n")
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * The names of the namespaces a sandbox with this prefix makes, exactly:
 * <prefix>-underlay, <prefix>-node-<n>, <prefix>-ep-<n>-<name> (endpoints.ts),
 * <prefix>-pod-<namespace>.<pod> (pods.ts podNetnsName) and <prefix>-ext-<n> (external.ts).
 * A prefix may itself contain '-', so a bare startsWith(prefix + "-") would take another sandbox's namespaces too
 * (sluice-sb vs sluice-sb-2). Left ambiguous: a prefix that ends like one of these
 * suffixes ("x-pod", "x-ep-1"); avoid such prefixes.
 */
export function sandboxNetnsPattern(prefix: string): RegExp {
  return new RegExp(`^${escapeRegExp(prefix)}-(?:underlay|node-\\d+|ext-\\d+|ep-\\d+-.+|pod-[^.]+\\..+)$`);
}

/** The namespaces in `names` that the sandbox with this prefix made. */
export function sandboxNetns(prefix: string, names: readonly string[]): string[] {
  const re = sandboxNetnsPattern(prefix);
  return names.filter((n) => re.test(n));
}
