/** Golden files (test/golden/<dir>: policy, backends), and the seeded generator of the policy tests' random scenarios. */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../src/sandbox/paths.js";

const goldenRoot = join(packageRoot(), "test", "golden");

/** `text` must equal test/golden/<dir>/<file>; UPDATE_GOLDEN=1 rewrites the file instead. */
export function assertGolden(dir: string, file: string, text: string): void {
  const path = join(goldenRoot, dir, file);
  if (process.env["UPDATE_GOLDEN"] === "1") {
    mkdirSync(join(goldenRoot, dir), { recursive: true });
    writeFileSync(path, text);
  }
  assert.ok(existsSync(path), `${path} is missing: run with UPDATE_GOLDEN=1 and review it`);
  assert.equal(text, readFileSync(path, "utf8"), `${path} differs: if the change is intended, run with UPDATE_GOLDEN=1 and review the diff`);
}

/** `text` must equal test/golden/policy/<name>.<ext> (.txt: iptables + ipset, .nft: nftables). */
export function assertPolicyGolden(name: string, text: string, ext: "txt" | "nft" = "txt"): void {
  assertGolden("policy", `${name}.${ext}`, text);
}

/** A small seeded PRNG (mulberry32): the same seed, the same scenarios. */
export function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
