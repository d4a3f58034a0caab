/**
 * The drivers' record of what they wrote, against the real kernel in throwaway namespaces:
 * an apply that trusts the record reads nothing and writes only the delta; one that does
 * not reads, logs what someone else changed and repairs it; a failed write drops the
 * record, so the next apply reads again.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { IpsetDriver } from "../../src/dataplane/ipset.js";
import { IptablesDriver, binaries } from "../../src/dataplane/iptables.js";
import { PolicyDataplane } from "../../src/dataplane/policyDataplane.js";
import { nsExec } from "../../src/sandbox/netns.js";
import type { IpsetSpec } from "../../src/render/ipsetSpec.js";
import type { Ruleset, RulesetSpec } from "../../src/render/ruleset.js";
import { ACCEPT, inSet, rule } from "../../src/render/rules.js";
import { captureLog } from "../helpers/log.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";

const prefix = uniquePrefix("ksc");
const trust = { trustCache: true };

const members = async (ns: string, name: string): Promise<string[]> =>
  (await nsExec(ns, "ipset", ["list", "-o", "save", name]))
    .split("\n")
    .filter((l) => l.startsWith(`add ${name} `))
    .map((l) => l.slice(`add ${name} `.length))
    .sort();
const setNames = async (ns: string): Promise<string[]> => (await nsExec(ns, "ipset", ["list", "-n"])).split("\n").filter(Boolean).sort();
const chainRules = async (ns: string, mode: string, chain: string): Promise<string[]> =>
  (await nsExec(ns, `iptables-${mode}-save`, ["-t", "filter"]))
    .split("\n")
    .filter((l) => l.startsWith(`-A ${chain} `))
    .map((l) => l.replace(/ -m comment --comment "?sluice:[0-9a-f]{16}"?/, ""));

const peers = (...m: string[]): IpsetSpec => ({ name: "slc4-peers", type: "hash:ip", family: 4, members: m });
const nets = (...m: string[]): IpsetSpec => ({ name: "slc4-nets", type: "hash:net", family: 4, members: m });

describe("ipset driver: the record of what it wrote", () => {
  const ns = `${prefix}-ips`;
  let d: IpsetDriver;
  const cap = captureLog();
  before(async () => {
    await makeNetns(ns);
    d = new IpsetDriver({ family: 4, netns: ns }, cap.log);
  });
  after(async () => removeNetnsWithPrefix(ns));

  test("the first apply reads; trusted changes after it read nothing and write only their delta", async () => {
    await d.prepare([peers("10.244.1.1", "10.244.1.2", "10.244.1.3"), nets("10.0.0.0/8", "10.1.0.0/16 nomatch")], trust);
    assert.equal(d.reads, 1, "with no record yet, trustCache reads anyway");
    const r = await d.prepare([peers("10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4"), nets("10.0.0.0/8", "10.1.0.0/16 nomatch")], trust);
    assert.equal(d.reads, 1);
    assert.deepEqual(r.plan.updated, ["slc4-peers"]);
    assert.equal(r.plan.memberOps, 1, "one add line, not a rewrite of the set");
    assert.deepEqual(await members(ns, "slc4-peers"), ["10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4"]);
    const writes = d.writes;
    const again = await d.prepare([peers("10.244.1.4", "10.244.1.3", "10.244.1.2", "10.244.1.1"), nets("10.1.0.0/16 nomatch", "10.0.0.0/8")], trust);
    assert.equal(again.wrote, false, "the record holds canonical members: the same sets in another order are a no-op");
    assert.equal(d.writes, writes);
    assert.equal(d.reads, 1);
  });

  test("a stale set goes from the record too, without a read", async () => {
    const r = await d.removeStale([peers("10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4")], 0, trust);
    assert.deepEqual(r.plan.destroyed, ["slc4-nets"]);
    assert.equal(d.reads, 1);
    assert.deepEqual(await setNames(ns), ["slc4-peers"]);
  });

  test("drift: a trusted apply does not see it; the next read logs it and repairs it", async () => {
    await nsExec(ns, "ipset", ["del", "slc4-peers", "10.244.1.2"]);
    await nsExec(ns, "ipset", ["create", "slc4-intruder", "hash:ip"]);
    const want = [peers("10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4")];
    assert.equal((await d.prepare(want, trust)).wrote, false, "the record says it is in place");
    assert.deepEqual(await members(ns, "slc4-peers"), ["10.244.1.1", "10.244.1.3", "10.244.1.4"]);
    const r = await d.prepare(want);
    assert.equal(d.reads, 2);
    assert.deepEqual(r.plan.updated, ["slc4-peers"]);
    assert.deepEqual(await members(ns, "slc4-peers"), ["10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4"]);
    const drift = cap.records.find((x) => x["msg"] === "ipsets differ from what this agent last wrote; repairing");
    assert.ok(drift, "the drift is logged");
    assert.deepEqual(drift["changed"], ["slc4-peers"]);
    assert.deepEqual(drift["unexpected"], ["slc4-intruder"]);
    await d.removeStale(want, 0, trust);
    assert.deepEqual(await setNames(ns), ["slc4-peers"], "the set found on the read is in the record, so a trusted removeStale takes it out");
  });

  test("a destroy the record cannot know is refused falls back to reading, and the set stays", async () => {
    await d.prepare([peers("10.244.1.1"), nets("10.2.0.0/16")], trust);
    // Someone else's rule now uses our set: the kernel refuses to destroy it.
    await nsExec(ns, "iptables-nft", ["-N", "FOREIGN"]);
    await nsExec(ns, "iptables-nft", ["-A", "FOREIGN", "-m", "set", "--match-set", "slc4-nets", "src", "-j", "RETURN"]);
    const reads = d.reads;
    const r = await d.removeStale([peers("10.244.1.1")], 0, trust);
    assert.equal(d.reads, reads + 1, "planned again from a read");
    assert.deepEqual(r.plan.inUse, ["slc4-nets"]);
    assert.ok((await setNames(ns)).includes("slc4-nets"));
    await nsExec(ns, "iptables-nft", ["-F", "FOREIGN"]);
    await nsExec(ns, "iptables-nft", ["-X", "FOREIGN"]);
  });
});

for (const mode of ["nft", "legacy"] as const) {
  describe(`iptables driver (${mode}): the record of what it wrote`, () => {
    const ns = `${prefix}-ipt-${mode}`;
    let d: IptablesDriver;
    const cap = captureLog();
    const table = (a: string[], b: string[]): RulesetSpec => ({
      family: 4,
      tables: [
        {
          table: "filter",
          chains: [
            { name: "SLUICE-FORWARD", rules: ["-o slc+ -j slc-a", "-i slc+ -j slc-b"] },
            { name: "slc-a", rules: a },
            { name: "slc-b", rules: b },
          ],
          hooks: [{ builtin: "FORWARD", target: "SLUICE-FORWARD" }],
        },
      ],
    });
    before(async () => {
      await makeNetns(ns);
      d = new IptablesDriver(binaries(4, mode, ns), cap.log);
    });
    after(async () => removeNetnsWithPrefix(ns));

    test("a trusted change reads nothing and rewrites only the chain that changed", async () => {
      await d.apply(table(["-s 10.0.0.1/32 -j ACCEPT"], ["-j DROP"]), trust);
      assert.equal(d.reads, 1);
      const [r] = await d.apply(table(["-s 10.0.0.2/32 -j ACCEPT"], ["-j DROP"]), trust);
      assert.equal(d.reads, 1);
      assert.deepEqual(r?.plan.rewritten, ["slc-a"]);
      assert.deepEqual(r?.plan.hooksFixed, []);
      assert.deepEqual(await chainRules(ns, mode, "slc-a"), ["-A slc-a -s 10.0.0.2/32 -j ACCEPT"]);
      const writes = d.writes;
      assert.equal((await d.apply(table(["-s 10.0.0.2/32 -j ACCEPT"], ["-j DROP"]), trust))[0]?.wrote, false);
      assert.equal(d.writes, writes);
    });

    test("drift is found and repaired by the next read, and logged", async () => {
      await nsExec(ns, `iptables-${mode}`, ["-F", "slc-b"]);
      await nsExec(ns, `iptables-${mode}`, ["-D", "FORWARD", "1"]);
      const want = table(["-s 10.0.0.2/32 -j ACCEPT"], ["-j DROP"]);
      assert.equal((await d.apply(want, trust))[0]?.wrote, false, "the record says it is in place");
      const [r] = await d.apply(want);
      assert.deepEqual(r?.plan.rewritten, ["slc-b"]);
      assert.deepEqual(r?.plan.hooksFixed, ["FORWARD"]);
      assert.deepEqual(await chainRules(ns, mode, "slc-b"), ["-A slc-b -j DROP"]);
      const drift = cap.records.find((x) => x["msg"] === "iptables chains differ from what this agent last wrote; repairing");
      assert.ok(drift, "the drift is logged");
      assert.deepEqual(drift["changed"], ["slc-b"]);
      assert.deepEqual(drift["hooks"], ["FORWARD"]);
    });

    test("a failed write drops the record: the next trusted apply reads", async () => {
      const reads = d.reads;
      // A set that does not exist: iptables-restore refuses the whole table.
      await assert.rejects(d.apply(table(["-m set --match-set slc4-missing src -j ACCEPT"], ["-j DROP"]), trust));
      assert.deepEqual(await chainRules(ns, mode, "slc-a"), ["-A slc-a -s 10.0.0.2/32 -j ACCEPT"], "nothing was half applied");
      await d.apply(table(["-s 10.0.0.3/32 -j ACCEPT"], ["-j DROP"]), trust);
      assert.equal(d.reads, reads + 1, "the failed apply trusted the record; the one after it read");
      assert.deepEqual(await chainRules(ns, mode, "slc-a"), ["-A slc-a -s 10.0.0.3/32 -j ACCEPT"]);
    });
  });
}

describe("policy dataplane: a trusted no-op neither reads nor writes", () => {
  const ns = `${prefix}-pdp`;
  let dp: PolicyDataplane;
  before(async () => {
    await makeNetns(ns);
    dp = new PolicyDataplane({ family: 4, mode: "nft", netns: ns, log: captureLog().log });
  });
  after(async () => removeNetnsWithPrefix(ns));

  const ruleset = (set: string): Ruleset => ({
    family: 4,
    tables: [{ table: "filter", chains: [{ name: "SLUICE-FORWARD", rules: [rule(ACCEPT, inSet(set, ["src"]))] }], hooks: [{ builtin: "FORWARD", target: "SLUICE-FORWARD" }] }],
  });

  test("start reads, a change between resyncs reads nothing, a resync reads again", async () => {
    await dp.apply(4, ruleset("slc4-a"), [{ name: "slc4-a", type: "hash:ip", family: 4, members: ["10.244.0.1"] }]);
    const reads = dp.reads;
    assert.equal(reads, 2, "the first apply lists the ipsets once (removeStale plans against what prepare read) and saves iptables once");
    // The rule moves to another set: created first, the rule switched, the old set destroyed.
    const r = await dp.apply(4, ruleset("slc4-b"), [{ name: "slc4-b", type: "hash:ip", family: 4, members: ["10.244.0.2"] }], trust);
    assert.equal(dp.reads, reads);
    assert.deepEqual(r.prepare.plan.created, ["slc4-b"]);
    assert.deepEqual(r.removeStale.plan.destroyed, ["slc4-a"]);
    assert.deepEqual(await setNames(ns), ["slc4-b"]);
    const writes = dp.writes;
    assert.equal((await dp.apply(4, ruleset("slc4-b"), [{ name: "slc4-b", type: "hash:ip", family: 4, members: ["10.244.0.2"] }], trust)).wrote, false);
    assert.equal(dp.writes, writes);
    assert.equal(dp.reads, reads);
    await dp.apply(4, ruleset("slc4-b"), [{ name: "slc4-b", type: "hash:ip", family: 4, members: ["10.244.0.2"] }]);
    assert.equal(dp.reads, reads * 2, "a resync reads as the first apply did");
  });
});
