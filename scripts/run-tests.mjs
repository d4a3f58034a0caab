// Runs the compiled test files with node's test runner. Suites: unit (pure, fast),
// integration (real etcd, iptables in throwaway namespaces), kernel (multi-node
// clusters in network namespaces with real traffic), e2e (sandbox clusters with real pods
// wired by sluice-cni, and the sluicectl sandbox CLI), vm (what this host's kernel lacks:
// WireGuard, IPIP, IPVS, SCTP sockets, in a QEMU guest with Debian's kernel; see
// scripts/vm/run.sh). Default: all, in that order.
// Prints node's spec report, then one plain summary line "tests: N passed, N failed, N skipped".
import { readdirSync, statSync, existsSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { spawnSync } from "node:child_process";
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
for (const s of suites) walk(join("build", "test", s));
if (stale.length > 0) console.log(`run-tests: not running ${stale.length} compiled test(s) whose source is gone: ${stale.join(", ")}`);
if (files.length === 0) {
  console.error(`no test files found for suites: ${suites.join(", ")} (run npm run build first)`);
  process.exit(1);
}
const tmp = mkdtempSync(join(tmpdir(), "sluice-tap-"));
const tap = join(tmp, "report.tap");
// One file at a time: kernel tests build whole clusters and must not starve each other on 2 cores.
const r = spawnSync(
  process.execPath,
  ["--enable-source-maps", "--test", "--test-concurrency=1", "--test-reporter=spec", "--test-reporter-destination=stdout", "--test-reporter=tap", `--test-reporter-destination=${tap}`, ...files],
  // sluicectl's contexts (sandbox up records one) go to a file of this run, never the user's.
  { stdio: "inherit", env: { ...process.env, SLUICE_CONFIG: process.env.SLUICE_CONFIG ?? join(tmp, "sluicectl-config.json") } },
);
const text = existsSync(tap) ? readFileSync(tap, "utf8") : "";
rmSync(tmp, { recursive: true, force: true });
const count = (name) => Number(new RegExp(`^# ${name} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
const failed = count("fail") + count("cancelled");
console.log(`tests: ${count("pass")} passed, ${failed} failed, ${count("skipped") + count("todo")} skipped`);
process.exit(r.status ?? 1);
