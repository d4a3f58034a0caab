/**
 * The test side of the kernel-feature VM (scripts/vm/run.sh): boot Debian's kernel under
 * QEMU with this host's file system, run a command there, and relay the guest's own node
 * test results into the host's test run, one host test per guest test, so a failure in the
 * guest reads like any other failing test (name, error, the guest's output).
 *
 * It does not decide what runs in the guest: test/vm/*.test.ts do (guest files are
 * test/vm/guest/*.guest.ts, compiled beside the other tests, never run on the host).
 */
import { spawn } from "node:child_process";
import type { TestContext } from "node:test";
import { packageRoot } from "../../src/sandbox/paths.js";

const RUN_SH = `${packageRoot()}/scripts/vm/run.sh`;

export interface VmRun {
  /** The guest command's exit status; 124 timed out, 125 the VM could not run it. */
  code: number;
  /** What the command printed (stdout and stderr, interleaved). */
  output: string;
  /** What run.sh itself said (why the VM failed, the console's tail). */
  stderr: string;
}

function runSh(args: readonly string[], timeoutMs: number): Promise<VmRun> {
  return new Promise((resolve) => {
    const child = spawn("bash", [RUN_SH, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env } });
    let output = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    // run.sh has its own timeout; this one only guards against run.sh itself hanging.
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs + 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 125, output, stderr });
    });
  });
}

/** Why the VM cannot be had on this machine, or undefined when it can. */
export async function vmUnavailable(): Promise<string | undefined> {
  if (process.env.SLUICE_IN_VM) return "already inside the VM";
  const r = await runSh(["--check"], 30_000);
  return r.code === 0 ? undefined : r.stderr.trim().replace(/^vm: /, "") || `scripts/vm/run.sh --check exited ${r.code}`;
}

/** Runs `cmd` as root in a fresh VM (cwd: the project), at most `timeoutS` seconds. */
export function runInVm(cmd: readonly string[], o: { timeoutS: number; memMiB?: number }): Promise<VmRun> {
  return runSh(["--timeout", String(o.timeoutS), ...(o.memMiB ? ["--mem", String(o.memMiB)] : []), "--", ...cmd], o.timeoutS * 1000);
}

/** One test of the guest's TAP report: its full name (parents joined by " > "), outcome and diagnostics. */
export interface GuestTest {
  name: string;
  outcome: "pass" | "fail" | "skip" | "todo";
  /** The skip/todo reason, or the YAML diagnostic block of a failure. */
  detail: string;
  /** True for a test with subtests (node reports them too): its outcome follows theirs. */
  parent: boolean;
}

/**
 * Reads node's TAP (`--test-reporter=tap`): `# Subtest: NAME` opens a level, `ok N - NAME`
 * (or `not ok`, `# SKIP why`, `# TODO why`) closes it at the same indentation, and the
 * indented `---`/`...` block after a result holds its diagnostics.
 */
export function parseNodeTap(text: string): GuestTest[] {
  const lines = text.split("\n");
  const out: GuestTest[] = [];
  const open: Array<{ indent: number; name: string; hasChildren: boolean }> = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const sub = /^(\s*)# Subtest: (.*)$/.exec(line);
    if (sub) {
      const indent = (sub[1] as string).length;
      const parentFrame = open.at(-1);
      if (parentFrame && parentFrame.indent < indent) parentFrame.hasChildren = true;
      open.push({ indent, name: sub[2] as string, hasChildren: false });
      continue;
    }
    const res = /^(\s*)(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b ?(.*))?$/.exec(line);
    if (!res) continue;
    const indent = (res[1] as string).length;
    while (open.length && (open.at(-1) as { indent: number }).indent > indent) open.pop();
    const frame = open.at(-1)?.indent === indent ? open.pop() : undefined;
    const names = [...open.map((f) => f.name), (res[3] as string).replace(/\\#/g, "#")];
    let detail = res[5] ?? "";
    if (lines[i + 1]?.trim() === "---") {
      const block: string[] = [];
      for (i += 2; i < lines.length && (lines[i] as string).trim() !== "..."; i++) block.push((lines[i] as string).slice(indent + 2));
      if (res[2] === "not ok") detail = block.filter((l) => !/^duration_ms:|^type: '?test'?$/.test(l)).join("\n");
    }
    const outcome = res[4] === "SKIP" ? "skip" : res[4] === "TODO" ? "todo" : res[2] === "ok" ? "pass" : "fail";
    out.push({ name: names.join(" > "), outcome, detail, parent: frame?.hasChildren ?? false });
  }
  return out;
}

/**
 * Boots the VM once for `guestFiles` (compiled .js paths, relative to the project), runs
 * them with node's test runner there and reports each guest test as a subtest of `t`.
 * The host test fails when the VM did not run, or when the guest's runner failed for a
 * reason no single test shows (a file that did not load, say).
 */
export async function runGuestTests(t: TestContext, guestFiles: readonly string[], o: { timeoutS: number }): Promise<void> {
  const r = await runInVm([process.execPath, "--enable-source-maps", "--test", "--test-concurrency=1", "--test-reporter=tap", ...guestFiles], { timeoutS: o.timeoutS });
  if (r.code === 124 || r.code === 125) throw new Error(`the VM did not run the guest tests (exit ${r.code}):\n${r.stderr.trim()}\n--- guest output ---\n${r.output.slice(-4000)}`);
  const tests = parseNodeTap(r.output).filter((g) => !g.parent);
  if (tests.length === 0) throw new Error(`the guest reported no test (exit ${r.code}):\n${r.output.slice(-4000)}\n${r.stderr.trim()}`);
  for (const g of tests) {
    await t.test(g.name, (tt) => {
      if (g.outcome === "skip") tt.skip(`in the VM: ${g.detail}`);
      else if (g.outcome === "todo") tt.todo(`in the VM: ${g.detail}`);
      else if (g.outcome === "fail") throw new Error(`failed in the VM:\n${g.detail}`);
    });
  }
  const failedInGuest = tests.some((g) => g.outcome === "fail");
  if (r.code !== 0 && !failedInGuest) throw new Error(`the guest's test runner exited ${r.code} with no failing test:\n${r.output.slice(-4000)}`);
}
