// Runs the compiled test files with node's test runner. Suites: unit (pure, fast),
// integration (real etcd, iptables in throwaway namespaces), kernel (multi-node
// clusters in network namespaces with real traffic). Default: all, in that order.
import { readdirSync, statSync, existsSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const suites = process.argv.slice(2).length ? process.argv.slice(2) : ["unit", "integration", "kernel"];
const files = [];
const walk = (dir) => {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir).sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith(".test.js")) files.push(p);
  }
};
for (const s of suites) walk(join("build", "test", s));
if (files.length === 0) {
  console.error(`no test files found for suites: ${suites.join(", ")} (run npm run build first)`);
  process.exit(1);
}
// One file at a time: kernel tests build whole clusters and must not starve each other on 2 cores.
const r = spawnSync(process.execPath, ["--enable-source-maps", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files], { stdio: "inherit" });
process.exit(r.status ?? 1);
