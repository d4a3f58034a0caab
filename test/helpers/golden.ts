/** Golden files of the policy tests (test/golden/policy), and the seeded generator of their random scenarios. */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../src/sandbox/paths.js";

const goldenDir = join(packageRoot(), "test", "golden", "policy");

/** `text` must equal test/golden/policy/<name>.<ext> (.txt: iptables + ipset, .nft: nftables); UPDATE_GOLDEN=1 rewrites the file instead. */
export function assertPolicyGolden(name: string, text: string, ext: "txt" | "nft" = "txt"): void {
  const file = join(goldenDir, `${name}.${ext}`);
  if (process.env["UPDATE_GOLDEN"] === "1") {
    mkdirSync(goldenDir, { recursive: true });
    writeFileSync(file, text);
  }
  assert.ok(existsSync(file), `${file} is missing: run with UPDATE_GOLDEN=1 and review it`);
  assert.equal(text, readFileSync(file, "utf8"), `${file} differs: if the change is intended, run with UPDATE_GOLDEN=1 and review the diff`);
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
