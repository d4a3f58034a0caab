/** Builds a sandbox cluster for a kernel or e2e test and guarantees its teardown. */
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { Sandbox, type SandboxBackend, type SandboxOptions, processesUsing, teardown } from "../../src/sandbox/cluster.js";
import { listNetns } from "../../src/sandbox/netns.js";
import { createNamespace } from "../../src/sandbox/pods.js";
import { run } from "../../src/dataplane/exec.js";
import { uniquePrefix } from "./netns.js";

export interface TestClusterOptions {
  backend: SandboxBackend;
  nodes: number;
  segments: 1 | 2;
  agentArgs?: string[];
  ipv6?: boolean;
  /** Another sluice-cni build than dist/bin/sluice-cni.js. */
  cniBin?: string;
  /** Kubernetes mode (SandboxOptions.kubeApi). */
  kubeApi?: SandboxOptions["kubeApi"];
  policyReadyTimeoutMs?: number;
  /** How long the agents may take to become ready (default 30 s; the VM's emulated CPU needs far more). */
  readyTimeoutMs?: number;
}

/** What a sandbox left behind: namespaces with its prefix, processes naming its state dir, the dir itself. */
export async function leftovers(prefix: string, stateDir: string): Promise<string[]> {
  const out: string[] = [];
  const ns = (await listNetns()).filter((n) => n.startsWith(`${prefix}-`));
  if (ns.length) out.push(`namespaces: ${ns.join(", ")}`);
  const pids = processesUsing(stateDir);
  if (pids.length) out.push(`processes: ${pids.join(", ")}`);
  if (existsSync(stateDir)) out.push(`state dir ${stateDir}`);
  return out;
}

/**
 * Call inside a describe(): registers the cluster's start (before) and its teardown
 * (after, which runs even when tests fail, and fails if anything is left behind).
 * The cluster has the "default" namespace object.
 */
export function testCluster(tag: string, o: TestClusterOptions): Sandbox {
  const prefix = uniquePrefix(tag);
  const stateDir = join(tmpdir(), prefix);
  const sb = new Sandbox({ prefix, stateDir, nodes: o.nodes, backend: o.backend, segments: o.segments, ipv6: o.ipv6 ?? false, ...(o.agentArgs ? { agentArgs: o.agentArgs } : {}), ...(o.cniBin ? { cniBin: o.cniBin } : {}), ...(o.kubeApi ? { kubeApi: o.kubeApi } : {}), ...(o.policyReadyTimeoutMs ? { policyReadyTimeoutMs: o.policyReadyTimeoutMs } : {}) });
  before(async () => {
    await teardown(prefix, stateDir); // a crashed earlier run of this file (same pid is unlikely, but cheap)
    await sb.up();
    await sb.waitAllReady(o.readyTimeoutMs);
    await createNamespace(sb, "default");
  });
  after(async () => {
    await sb.down();
    await teardown(prefix, stateDir);
    const left = await leftovers(prefix, stateDir);
    if (left.length) throw new Error(`sandbox ${prefix} left things behind: ${left.join("; ")}`);
  });
  return sb;
}

export interface JsonRoute {
  dst: string;
  gateway?: string;
  dev: string;
  flags: string[];
}

export async function nsJson<T>(ns: string, cmd: string, args: string[]): Promise<T> {
  const r = await run("ip", ["netns", "exec", ns, cmd, "-j", ...args]);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} in ${ns}: ${r.stderr}`);
  return JSON.parse(r.stdout || "[]") as T;
}
