/** Builds a sandbox cluster for a kernel test and guarantees its teardown. */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { Sandbox, type SandboxBackend, teardown } from "../../src/sandbox/cluster.js";
import { listNetns } from "../../src/sandbox/netns.js";
import { run } from "../../src/dataplane/exec.js";
import { uniquePrefix } from "./netns.js";

/**
 * Call inside a describe(): registers the cluster's start (before) and its teardown
 * (after, which runs even when tests fail, and fails if anything is left behind).
 */
export function testCluster(tag: string, o: { backend: SandboxBackend; nodes: number; segments: 1 | 2; agentArgs?: string[]; ipv6?: boolean }): Sandbox {
  const prefix = uniquePrefix(tag);
  const stateDir = join(tmpdir(), prefix);
  const sb = new Sandbox({ prefix, stateDir, nodes: o.nodes, backend: o.backend, segments: o.segments, ipv6: o.ipv6 ?? false, ...(o.agentArgs ? { agentArgs: o.agentArgs } : {}) });
  before(async () => {
    await sb.up();
    await sb.waitAllReady();
  });
  after(async () => {
    await sb.down();
    await teardown(prefix, stateDir);
    const left = (await listNetns()).filter((n) => n.startsWith(prefix));
    if (left.length) throw new Error(`namespaces left behind: ${left.join(", ")}`);
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
