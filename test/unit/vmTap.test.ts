/**
 * The vm suite relays the guest's results by reading node's own TAP: check the reader on
 * TAP that node's test runner really prints (the node running this test), with nesting,
 * failures, skips and todos, names with '#' in them.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { parseNodeTap } from "../helpers/vm.js";

const FIXTURE = `
const { describe, test } = require("node:test");
const assert = require("node:assert");
describe("outer", () => {
  test("passes", () => {});
  test("fails", () => assert.equal(1, 2, "one is not two"));
  describe("inner", () => {
    test("deep pass", () => {});
    test("skipped", (t) => t.skip("no SCTP here"));
  });
});
test("top # with hash", () => {});
test("todo one", { todo: "later" }, () => {});
test("with subtests", async (t) => {
  await t.test("child a", () => {});
  await t.test("child b", () => { throw new Error("boom"); });
});
`;

describe("parseNodeTap", () => {
  test("reads every test of a real node TAP report, with full names, outcomes and failure details", () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-tap-"));
    try {
      const file = join(dir, "fixture.test.js");
      writeFileSync(file, FIXTURE);
      // Without NODE_TEST_CONTEXT: with it, the child would report to this runner instead of printing TAP.
      const env = { ...process.env };
      delete env.NODE_TEST_CONTEXT;
      const r = spawnSync(process.execPath, ["--test", "--test-reporter=tap", file], { encoding: "utf8", env });
      assert.notEqual(r.status, 0, "the fixture has failures");
      const got = parseNodeTap(r.stdout);
      const leaf = got.filter((g) => !g.parent).map((g) => [g.name, g.outcome]);
      assert.deepEqual(leaf, [
        ["outer > passes", "pass"],
        ["outer > fails", "fail"],
        ["outer > inner > deep pass", "pass"],
        ["outer > inner > skipped", "skip"],
        ["top # with hash", "pass"],
        ["todo one", "todo"],
        ["with subtests > child a", "pass"],
        ["with subtests > child b", "fail"],
      ]);
      const parents = got.filter((g) => g.parent).map((g) => [g.name, g.outcome]);
      assert.deepEqual(parents, [
        ["outer > inner", "pass"],
        ["outer", "fail"],
        ["with subtests", "fail"],
      ]);
      assert.match(got.find((g) => g.name === "outer > fails")?.detail ?? "", /one is not two/);
      assert.match(got.find((g) => g.name === "with subtests > child b")?.detail ?? "", /boom/);
      assert.equal(got.find((g) => g.name === "outer > inner > skipped")?.detail, "no SCTP here");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a report with no result lines has no tests", () => {
    assert.deepEqual(parseNodeTap("TAP version 13\n# tests 0\n"), []);
  });
});
