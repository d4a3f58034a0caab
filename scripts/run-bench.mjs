// Runs the compiled benchmarks one after another: every build/bench/*.js, or only those
// named as arguments ("cniAddLatency" or "build/bench/cniAddLatency.js"). Benchmarks
// print figures and assert nothing; a benchmark that crashes makes the run fail.
import { existsSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { spawnSync } from "node:child_process";
import { ensurePinnedNode } from "./pinned-node.mjs";

ensurePinnedNode("run-bench");

const dir = join("build", "bench");
if (!existsSync(dir)) {
  console.error("no build/bench directory (run npm run build first)");
  process.exit(1);
}
const all = readdirSync(dir).filter((f) => f.endsWith(".js")).sort();
const wanted = process.argv.slice(2).map((a) => basename(a).replace(/\.(js|ts)$/, ""));
const unknown = wanted.filter((w) => !all.includes(`${w}.js`));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(", ")} (have: ${all.map((f) => f.replace(/\.js$/, "")).join(", ")})`);
  process.exit(1);
}
const files = wanted.length ? wanted.map((w) => `${w}.js`) : all;
let failed = 0;
for (const f of files) {
  console.log(`\n== ${f.replace(/\.js$/, "")} ==`);
  const r = spawnSync(process.execPath, ["--enable-source-maps", join(dir, f)], { stdio: "inherit" });
  if (r.status !== 0) {
    failed++;
    console.error(`${f} failed (exit ${r.status ?? r.signal})`);
  }
}
process.exit(failed ? 1 : 0);
