import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { canonicalSelector, normalizeSelector, selectorMatches, selectsEverything } from "../../src/policy/selectors.js";
import { labelSelector, type LabelSelector } from "../../src/config/k8sSchemas.js";
import { EndpointIndex } from "../../src/policy/endpointIndex.js";

const web = { app: "web", tier: "front" };
const db = { app: "db", tier: "back", pci: "" };
const bare = {};

function sel(s: unknown): LabelSelector {
  return labelSelector.parse(s);
}

describe("label selectors", () => {
  test("the empty selector (and an absent one) selects everything, including objects without labels", () => {
    for (const l of [web, db, bare]) {
      assert.equal(selectorMatches(sel({}), l), true);
      assert.equal(selectorMatches(undefined, l), true);
      assert.equal(selectorMatches(sel({ matchLabels: {}, matchExpressions: [] }), l), true);
    }
    assert.equal(selectsEverything(sel({ matchLabels: {} })), true);
    assert.equal(selectsEverything(sel({ matchLabels: { a: "b" } })), false);
  });

  test("matchLabels: every pair must be present with exactly that value", () => {
    assert.equal(selectorMatches(sel({ matchLabels: { app: "web" } }), web), true);
    assert.equal(selectorMatches(sel({ matchLabels: { app: "web", tier: "front" } }), web), true);
    assert.equal(selectorMatches(sel({ matchLabels: { app: "web", tier: "back" } }), web), false);
    assert.equal(selectorMatches(sel({ matchLabels: { app: "web" } }), bare), false);
    // an empty value must be present as the empty string
    assert.equal(selectorMatches(sel({ matchLabels: { pci: "" } }), db), true);
    assert.equal(selectorMatches(sel({ matchLabels: { pci: "" } }), web), false);
  });

  test("In: key present and value listed; a missing key never matches", () => {
    const s = sel({ matchExpressions: [{ key: "app", operator: "In", values: ["web", "api"] }] });
    assert.equal(selectorMatches(s, web), true);
    assert.equal(selectorMatches(s, db), false);
    assert.equal(selectorMatches(s, bare), false);
  });

  test("NotIn: matches when the key is absent or its value is not listed", () => {
    const s = sel({ matchExpressions: [{ key: "app", operator: "NotIn", values: ["web"] }] });
    assert.equal(selectorMatches(s, web), false);
    assert.equal(selectorMatches(s, db), true);
    assert.equal(selectorMatches(s, bare), true);
  });

  test("Exists: key present with any value, the empty string included", () => {
    const s = sel({ matchExpressions: [{ key: "pci", operator: "Exists" }] });
    assert.equal(selectorMatches(s, db), true);
    assert.equal(selectorMatches(s, web), false);
    assert.equal(selectorMatches(s, bare), false);
  });

  test("DoesNotExist: key absent (an empty value counts as present)", () => {
    const s = sel({ matchExpressions: [{ key: "pci", operator: "DoesNotExist" }] });
    assert.equal(selectorMatches(s, db), false);
    assert.equal(selectorMatches(s, web), true);
    assert.equal(selectorMatches(s, bare), true);
  });

  test("matchLabels and matchExpressions are ANDed", () => {
    const s = sel({ matchLabels: { tier: "back" }, matchExpressions: [{ key: "app", operator: "NotIn", values: ["web"] }, { key: "pci", operator: "Exists" }] });
    assert.equal(selectorMatches(s, db), true);
    assert.equal(selectorMatches(s, { ...db, app: "web" }), false);
    assert.equal(selectorMatches(s, { app: "db", tier: "back" }), false);
    // contradictory requirements select nothing
    const none = sel({ matchLabels: { app: "web" }, matchExpressions: [{ key: "app", operator: "DoesNotExist" }] });
    assert.equal([web, db, bare].some((l) => selectorMatches(none, l)), false);
  });

  test("keys are matched exactly (prefixes, case) and inherited object properties are not labels", () => {
    const s = sel({ matchExpressions: [{ key: "example.com/team", operator: "Exists" }] });
    assert.equal(selectorMatches(s, { "example.com/team": "a" }), true);
    assert.equal(selectorMatches(s, { team: "a" }), false);
    assert.equal(selectorMatches(sel({ matchLabels: { App: "web" } }), web), false);
    assert.equal(selectorMatches(sel({ matchExpressions: [{ key: "constructor", operator: "Exists" }] }), bare), false);
    assert.equal(selectorMatches(sel({ matchExpressions: [{ key: "toString", operator: "DoesNotExist" }] }), bare), true);
  });

  test("long value lists (looked up in a set) match as short ones do; the index agrees with the selector", () => {
    const values = Array.from({ length: 5000 }, (_, i) => `v${i}`);
    const inSel = sel({ matchExpressions: [{ key: "app", operator: "In", values: [...values, "web"] }] });
    const notIn = sel({ matchExpressions: [{ key: "app", operator: "NotIn", values: [...values, "web"] }] });
    assert.deepEqual([web, db, bare].map((l) => selectorMatches(inSel, l)), [true, false, false]);
    assert.deepEqual([web, db, bare].map((l) => selectorMatches(notIn, l)), [false, true, true]);
    const pods = [web, db, bare, { app: "v4999" }].map((labels, i) => ({ namespace: "a", pod: `p${i}`, node: "n", hostIface: `slc${i}`, ips: [`10.0.0.${i + 1}`], labels, ports: [] }));
    const index = new EndpointIndex(pods, []);
    assert.deepEqual(index.podsInNamespace("a", normalizeSelector(inSel)).map((p) => p.pod), ["p0", "p3"]);
    assert.deepEqual(index.podsInNamespace("a", normalizeSelector(notIn)).map((p) => p.pod), ["p1", "p2"]);
  });

  test("canonical form: order-free, duplicates removed, matchLabels = In with one value", () => {
    assert.equal(canonicalSelector(sel({})), "");
    assert.equal(canonicalSelector(undefined), "");
    const a = sel({ matchLabels: { b: "2", a: "1" }, matchExpressions: [{ key: "c", operator: "In", values: ["y", "x", "y"] }, { key: "d", operator: "DoesNotExist" }, { key: "e", operator: "Exists" }, { key: "f", operator: "NotIn", values: ["z"] }, { key: "g", operator: "NotIn", values: ["2", "1"] }] });
    assert.equal(canonicalSelector(a), "a=1,b=2,c in (x,y),!d,e,f!=z,g notin (1,2)");
    const b = sel({ matchExpressions: [{ key: "b", operator: "In", values: ["2"] }, { key: "a", operator: "In", values: ["1"] }] });
    assert.equal(canonicalSelector(b), canonicalSelector(sel({ matchLabels: { a: "1", b: "2" } })));
    assert.equal(canonicalSelector(sel({ matchLabels: { a: "1" }, matchExpressions: [{ key: "a", operator: "In", values: ["1"] }] })), "a=1");
    assert.notEqual(canonicalSelector(sel({ matchLabels: { a: "1" } })), canonicalSelector(sel({ matchExpressions: [{ key: "a", operator: "NotIn", values: ["1"] }] })));
  });

  test("normalizing keeps the meaning and the canonical form", () => {
    const s = sel({ matchLabels: { app: "web" }, matchExpressions: [{ key: "pci", operator: "DoesNotExist" }, { key: "tier", operator: "In", values: ["front", "back"] }] });
    const n = normalizeSelector(s);
    assert.equal(canonicalSelector(n), canonicalSelector(s));
    for (const l of [web, db, bare, { app: "web", tier: "back" }]) assert.equal(selectorMatches(n, l), selectorMatches(s, l));
    assert.deepEqual(normalizeSelector(sel({ matchLabels: {} })), {});
  });
});
