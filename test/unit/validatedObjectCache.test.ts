import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ObjectId, ValidatedObjectCache } from "../../src/datastore/validatedObjectCache.js";
import { captureLog } from "../helpers/log.js";

const policy = (name: string): ObjectId => ({ kind: "NetworkPolicy", namespace: "x", name });
const good = (value: string, dropped?: string) => ({ ok: true as const, value, dropped });
const bad = (reason: string) => ({ ok: false as const, reason });

function cache(): { c: ValidatedObjectCache<string>; messages: () => string[] } {
  const logs = captureLog();
  return { c: new ValidatedObjectCache<string>(logs.log, "value"), messages: logs.messages };
}

describe("ValidatedObjectCache", () => {
  test("a valid version is shown; a bad one over it keeps the last good version and is reported as such", () => {
    const { c, messages } = cache();
    assert.equal(c.put("x/p", policy("p"), good("v1")), true);
    assert.equal(c.put("x/p", policy("p"), bad("broken")), false, "the shown state did not change");
    assert.deepEqual(c.entries(), [["x/p", "v1"]]);
    assert.equal(c.get("x/p"), "v1");
    assert.deepEqual(c.refused(), [], "a key with a last good version is not refused");
    assert.deepEqual(c.invalidValues(), [{ key: "x/p", reason: "broken", keptLastGood: true }]);
    assert.ok(messages().includes("invalid value; keeping its last good version"));
  });

  test("a key that never had a good version is refused, by kind, namespace and name; a value naming no object is only ignored", () => {
    const { c, messages } = cache();
    assert.equal(c.put("x/p", policy("p"), bad("no selector")), true, "a refused object changes the shown state");
    assert.equal(c.put("x/p", policy("p"), bad("no selector")), false, "the same refusal again changes nothing");
    assert.equal(messages().filter((m) => m === "invalid value; refused (a policy gets a fail-closed stand-in)").length, 1, "logged once");
    assert.equal(c.put("x/p", policy("p"), bad("other reason")), true, "a new reason is a change");
    assert.equal(c.put("rec", undefined, bad("not JSON")), false, "nothing to stand in for: nothing shown changes");
    assert.ok(messages().includes("invalid value; ignoring it"));
    assert.deepEqual(c.entries(), []);
    assert.equal(c.size, 0);
    assert.deepEqual(c.refused(), [{ kind: "NetworkPolicy", namespace: "x", name: "p", reason: "other reason" }]);
    assert.deepEqual(c.invalidValues(), [
      { key: "rec", reason: "not JSON", keptLastGood: false },
      { key: "x/p", reason: "other reason", keptLastGood: false },
    ]);
  });

  test("a good version coming back ends the refusal", () => {
    const { c, messages } = cache();
    c.put("x/p", policy("p"), bad("broken"));
    assert.equal(c.put("x/p", policy("p"), good("v2")), true);
    assert.deepEqual(c.entries(), [["x/p", "v2"]]);
    assert.deepEqual(c.refused(), []);
    assert.deepEqual(c.invalidValues(), []);
    assert.ok(messages().includes("value is valid again"));
    // And from a kept last good version too.
    c.put("x/p", policy("p"), bad("broken"));
    c.put("x/p", policy("p"), good("v3"));
    assert.deepEqual(c.entries(), [["x/p", "v3"]]);
    assert.deepEqual(c.invalidValues(), []);
  });

  test("a delete forgets the key: its good version, its refusal, or both", () => {
    const { c } = cache();
    c.put("x/a", policy("a"), good("a"));
    c.put("x/b", policy("b"), bad("broken"));
    c.put("x/c", policy("c"), good("c"));
    c.put("x/c", policy("c"), bad("broken"));
    c.put("rec", undefined, bad("not JSON"));
    assert.equal(c.delete("x/a"), true);
    assert.equal(c.delete("x/b"), true, "a refused object going away changes what is shown");
    assert.equal(c.delete("x/c"), true);
    assert.equal(c.delete("rec"), false, "an ignored value going away changes nothing shown");
    assert.equal(c.delete("x/unknown"), false);
    assert.deepEqual([c.entries(), c.refused(), c.invalidValues()], [[], [], []]);
    // Deleted means forgotten: a bad version now is refused, with no last good version.
    c.put("x/a", policy("a"), bad("broken"));
    assert.deepEqual(c.refused().map((r) => r.name), ["a"]);
  });

  test("a relist keeps the last good version of a key still invalid, and forgets keys no longer listed", () => {
    const { c } = cache();
    c.put("x/keep", policy("keep"), good("k1"));
    c.put("x/breaks", policy("breaks"), good("b1"));
    c.put("x/gone", policy("gone"), good("g1"));
    c.put("x/gone-bad", policy("gone-bad"), bad("broken"));
    c.replaceAll([
      { key: "x/breaks", id: policy("breaks"), version: bad("broken") },
      { key: "x/keep", id: policy("keep"), version: good("k2") },
      { key: "x/new-bad", id: policy("new-bad"), version: bad("broken") },
    ]);
    assert.deepEqual(c.entries(), [
      ["x/breaks", "b1"],
      ["x/keep", "k2"],
    ]);
    assert.deepEqual(c.refused().map((r) => r.name), ["new-bad"]);
    assert.deepEqual(c.invalidValues().map((v) => [v.key, v.keptLastGood]), [
      ["x/breaks", true],
      ["x/new-bad", false],
    ]);
  });

  test("values dropped from a good version are warned about once per change", () => {
    const { c, messages } = cache();
    const dropped = () => messages().filter((m) => m === "values no host may have are dropped from the object; the rest of it applies").length;
    c.put("n", { kind: "Node", name: "n" }, good("v1", "status.addresses[0]: 0.0.0.0"));
    c.put("n", { kind: "Node", name: "n" }, good("v2", "status.addresses[0]: 0.0.0.0"));
    assert.equal(dropped(), 1, "the same drop again is not logged again");
    c.put("n", { kind: "Node", name: "n" }, good("v3", ""));
    c.put("n", { kind: "Node", name: "n" }, good("v4", "status.addresses[0]: 0.0.0.0"));
    assert.equal(dropped(), 2);
  });
});
