// Runs the compiled test files with node's test runner. Suites: unit (pure, fast),
// integration (real etcd, iptables in throwaway namespaces), kernel (multi-node
// clusters in network namespaces with real traffic), e2e (sandbox clusters with real pods
// wired by sluice-cni, and the sluicectl sandbox CLI), vm (what this host's kernel lacks:
// WireGuard, IPIP, IPVS, SCTP sockets, in a QEMU guest with Debian's kernel; see
// scripts/vm/run.sh). Default: all (unit, integration, kernel, e2e in that order; vm beside
// the first two, see below).
// Prints node's spec report, then one plain summary line "tests: N passed, N failed, N skipped".
//
// The vm suite is one QEMU guest in software emulation: minutes of CPU that waits on
// nothing of the host's. It runs beside unit and integration (which leave most of a core
// idle: etcd and kernel round trips), its report printed when it ends; kernel and e2e,
// whose multi-node clusters need both cores, run alone after both. Measured on the 2-core
// machine: vm 220 s + integration 304 s in turn, 362 s side by side.
import { readdirSync, statSync, existsSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import { ensurePinnedNode } from "./pinned-node.mjs";

ensurePinnedNode("run-tests");

const suites = process.argv.slice(2).length ? process.argv.slice(2) : ["unit", "integration", "kernel", "e2e", "vm"];
const files = [];
const stale = [];
// build/ is never cleaned, so a test whose source was deleted or renamed keeps its old
// output there: only compiled tests with a test/**/*.test.ts beside them run.
const sourceOf = (compiled) => compiled.replace(/^build[\\/]/, "").replace(/\.js$/, ".ts");
const walk = (dir) => {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir).sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith(".test.js")) (existsSync(sourceOf(p)) ? files : stale).push(p);
  }
};
const bySuite = new Map(suites.map((s) => [s, []]));
for (const s of suites) {
  const before = files.length;
  walk(join("build", "test", s));
  bySuite.set(s, files.slice(before));
}
if (stale.length > 0) console.log(`run-tests: not running ${stale.length} compiled test(s) whose source is gone: ${stale.join(", ")}`);
if (files.length === 0) {
  console.error(`no test files found for suites: ${suites.join(", ")} (run npm run build first)`);
  process.exit(1);
}
const tmp = mkdtempSync(join(tmpdir(), "sluice-tap-"));
// sluicectl's contexts (sandbox up records one) go to a file of this run, never the user's.
const env = { ...process.env, SLUICE_CONFIG: process.env.SLUICE_CONFIG ?? join(tmp, "sluicectl-config.json") };

/**
 * One node --test run over `list` (one file at a time: kernel tests build whole clusters
 * and must not starve each other on 2 cores). The spec report goes to stdout, or into a
 * buffer printed when the run ends (`quiet`: a run beside another); resolves with its exit
 * status and TAP text.
 */
function runFiles(name, list, quiet) {
  const tap = join(tmp, `${name}.tap`);
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["--enable-source-maps", "--test", "--test-concurrency=1", "--test-reporter=spec", "--test-reporter-destination=stdout", "--test-reporter=tap", `--test-reporter-destination=${tap}`, ...list],
      { stdio: ["ignore", quiet ? "pipe" : "inherit", "inherit"], env },
    );
    const out = [];
    child.stdout?.on("data", (d) => out.push(d));
    child.on("close", (code, signal) => {
      if (quiet) process.stdout.write(Buffer.concat(out));
      resolve({ code: code ?? (signal ? 1 : 0), tap: existsSync(tap) ? readFileSync(tap, "utf8") : "" });
    });
  });
}

const of = (...names) => names.flatMap((n) => bySuite.get(n) ?? []);
const runs = [];
const vmFiles = of("vm");
const besideVm = of("unit", "integration");
if (vmFiles.length && besideVm.length) {
  runs.push(...(await Promise.all([runFiles("vm", vmFiles, true), runFiles("unit-integration", besideVm, false)])));
  const after = of("kernel", "e2e");
  if (after.length) runs.push(await runFiles("kernel-e2e", after, false));
} else {
  runs.push(await runFiles("all", files, false));
}
rmSync(tmp, { recursive: true, force: true });
const count = (name) => runs.reduce((n, r) => n + Number(new RegExp(`^# ${name} (\\d+)$`, "m").exec(r.tap)?.[1] ?? 0), 0);
const failed = count("fail") + count("cancelled");
console.log(`tests: ${count("pass")} passed, ${failed} failed, ${count("skipped") + count("todo")} skipped`);
process.exit(runs.every((r) => r.code === 0) ? 0 : 1);
