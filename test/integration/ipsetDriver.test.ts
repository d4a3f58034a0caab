import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { IpsetDriver } from "../../src/dataplane/ipset.js";
import { nsExec } from "../../src/sandbox/netns.js";
import type { IpsetSpec } from "../../src/render/ipsetSpec.js";
import { captureLog } from "../helpers/log.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";

const prefix = uniquePrefix("ips");
const ns = `${prefix}-a`;

/** `ipset list -o save` of one set: its create line's type/family and its sorted members. */
async function kernelSet(name: string): Promise<{ header: string; members: string[] } | undefined> {
  const out = await nsExec(ns, "ipset", ["list", "-o", "save"]);
  const lines = out.split("\n");
  const create = lines.find((l) => l.startsWith(`create ${name} `));
  if (!create) return undefined;
  const members = lines.filter((l) => l.startsWith(`add ${name} `)).map((l) => l.slice(`add ${name} `.length)).sort();
  return { header: create.split(" ").slice(2, 5).join(" "), members };
}
const setNames = async (): Promise<string[]> => (await nsExec(ns, "ipset", ["list", "-n"])).split("\n").filter(Boolean).sort();
const refs = async (name: string): Promise<number> => Number(/References: (\d+)/.exec(await nsExec(ns, "ipset", ["list", "-t", name]))?.[1]);

const peers: IpsetSpec = { name: "slc4-peers", type: "hash:ip", family: 4, members: ["10.244.1.5", "10.244.2.7", "10.244.3.9/32"] };
const block: IpsetSpec = { name: "slc4-block", type: "hash:net", family: 4, members: ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.9.9.9/32", "192.168.7.77/23"] };
const named: IpsetSpec = { name: "slc4-named", type: "hash:ip,port", family: 4, members: ["10.244.1.5,tcp:80", "10.244.2.7,udp:53", "10.244.2.7,8080"] };
const v6: IpsetSpec = { name: "slc6-peers", type: "hash:net", family: 6, members: ["fd00:244::/64", "fd00:244:0:0::5/128 nomatch", "FD00:0:0:0::1/128"] };

describe("ipset driver in a throwaway namespace", () => {
  let d4: IpsetDriver;
  let d6: IpsetDriver;
  const desired = [peers, block, named];
  before(async () => {
    await makeNetns(ns);
    d4 = new IpsetDriver({ family: 4, netns: ns }, captureLog().log);
    d6 = new IpsetDriver({ family: 6, netns: ns }, captureLog().log);
    // Someone else's sets, which must never be touched.
    await nsExec(ns, "ipset", ["create", "KUBE-FOREIGN", "hash:ip"]);
    await nsExec(ns, "ipset", ["add", "KUBE-FOREIGN", "192.0.2.1"]);
  });
  after(async () => removeNetnsWithPrefix(prefix));

  test("prepare creates every set with the canonical members the kernel prints", async () => {
    const r = await d4.prepare(desired);
    assert.equal(r.wrote, true);
    assert.deepEqual(r.plan.created, ["slc4-block", "slc4-named", "slc4-peers"]);
    assert.deepEqual(await kernelSet("slc4-peers"), { header: "hash:ip family inet", members: ["10.244.1.5", "10.244.2.7", "10.244.3.9"] });
    assert.deepEqual(await kernelSet("slc4-block"), { header: "hash:net family inet", members: ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.9.9.9", "192.168.6.0/23"] });
    assert.deepEqual(await kernelSet("slc4-named"), { header: "hash:ip,port family inet", members: ["10.244.1.5,tcp:80", "10.244.2.7,tcp:8080", "10.244.2.7,udp:53"] });
  });

  test("prepare again issues no ipset restore at all", async () => {
    const writes = d4.writes;
    const r = await d4.prepare(desired);
    assert.equal(r.wrote, false);
    assert.equal(d4.writes, writes);
    assert.equal((await d4.removeStale(desired)).wrote, false);
    assert.equal(d4.writes, writes);
  });

  test("the IPv6 driver shares the kernel without touching IPv4 sets, and vice versa", async () => {
    await d6.prepare([v6]);
    assert.deepEqual(await kernelSet("slc6-peers"), { header: "hash:net family inet6", members: ["fd00:244::/64", "fd00:244::5 nomatch", "fd00::1"] });
    const w6 = d6.writes;
    assert.equal((await d6.prepare([v6])).wrote, false);
    assert.equal((await d6.removeStale([v6])).wrote, false, "IPv4 sets are not stale to the IPv6 driver");
    assert.equal(d6.writes, w6);
    const w4 = d4.writes;
    await d4.removeStale(desired);
    assert.equal(d4.writes, w4);
    assert.ok((await setNames()).includes("slc6-peers"));
  });

  test("replacing the members of a set in use swaps in a full temporary set", async () => {
    await nsExec(ns, "iptables-nft", ["-N", "FOREIGN-USER"]);
    await nsExec(ns, "iptables-nft", ["-A", "FOREIGN-USER", "-m", "set", "--match-set", "slc4-peers", "src", "-j", "RETURN"]);
    const next = { ...peers, members: ["10.244.7.1", "10.244.7.2", "10.244.7.3"] };
    const r = await d4.prepare([next, block, named]);
    assert.deepEqual(r.plan.swapped, ["slc4-peers"]);
    assert.match(r.plan.restore ?? "", /^swap slct-[0-9a-f]{20} slc4-peers$/m);
    assert.deepEqual((await kernelSet("slc4-peers"))?.members, next.members);
    assert.equal(await refs("slc4-peers"), 1, "the rule still points at the live set");
    assert.ok(!(await setNames()).some((n) => n.startsWith("slct-")), "the temporary set is gone");
    await d4.prepare(desired);
  });

  test("a small change is made in place", async () => {
    const next = { ...block, members: [...block.members, "172.16.0.0/12", "10.2.0.0/16 nomatch"] };
    const r = await d4.prepare([peers, next, named]);
    assert.deepEqual(r.plan.updated, ["slc4-block"]);
    assert.deepEqual(r.plan.swapped, []);
    assert.equal(r.plan.memberOps, 2);
    assert.deepEqual((await kernelSet("slc4-block"))?.members, ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.2.0.0/16 nomatch", "10.9.9.9", "172.16.0.0/12", "192.168.6.0/23"]);
    await d4.prepare(desired);
  });

  test("drift is repaired: a flushed set, an added member, a destroyed set", async () => {
    await nsExec(ns, "ipset", ["flush", "slc4-peers"]);
    await nsExec(ns, "ipset", ["add", "slc4-named", "10.99.0.1,tcp:22"]);
    await nsExec(ns, "ipset", ["destroy", "slc4-block"]);
    const r = await d4.prepare(desired);
    assert.deepEqual(r.plan.created, ["slc4-block"]);
    assert.deepEqual(r.plan.swapped, ["slc4-peers"]);
    assert.deepEqual(r.plan.updated, ["slc4-named"]);
    assert.match(r.plan.restore ?? "", /^del slc4-named 10\.99\.0\.1,tcp:22$/m);
    for (const s of desired) assert.equal((await kernelSet(s.name))?.members.length, s.members.length, s.name);
    assert.equal((await d4.prepare(desired)).wrote, false);
  });

  test("a nomatch flag flipped by hand is flipped back in place", async () => {
    await nsExec(ns, "ipset", ["-exist", "add", "slc4-block", "10.1.0.0/16"]);
    const r = await d4.prepare(desired);
    assert.deepEqual(r.plan.updated, ["slc4-block"]);
    assert.ok((await kernelSet("slc4-block"))?.members.includes("10.1.0.0/16 nomatch"));
  });

  test("same name, other type: recreated when nothing uses it", async () => {
    await nsExec(ns, "ipset", ["destroy", "slc4-block"]);
    await nsExec(ns, "ipset", ["create", "slc4-block", "hash:ip"]);
    const r = await d4.prepare(desired);
    assert.deepEqual(r.plan.recreated, ["slc4-block"]);
    assert.equal((await kernelSet("slc4-block"))?.header, "hash:net family inet");
  });

  test("same name, other type, in use: left alone and reported blocked", async () => {
    const asNet = { ...peers, type: "hash:net" as const };
    const r = await d4.prepare([asNet, block, named]);
    assert.deepEqual(r.plan.blocked, ["slc4-peers"]);
    assert.equal((await kernelSet("slc4-peers"))?.header, "hash:ip family inet");
  });

  test("a leftover temporary set is removed", async () => {
    await nsExec(ns, "ipset", ["create", "slct-leftover", "hash:ip"]);
    const r = await d4.prepare(desired);
    assert.deepEqual(r.plan.destroyed, ["slct-leftover"]);
    assert.ok(!(await setNames()).includes("slct-leftover"));
  });

  test("removeStale destroys unwanted sets and leaves a referenced one in place", async () => {
    const r = await d4.removeStale([block, named]);
    assert.deepEqual(r.plan.destroyed, []);
    assert.deepEqual(r.plan.inUse, ["slc4-peers"], "FOREIGN-USER still references it");
    await nsExec(ns, "iptables-nft", ["-F", "FOREIGN-USER"]);
    const r2 = await d4.removeStale([block]);
    assert.deepEqual(r2.plan.destroyed, ["slc4-named", "slc4-peers"]);
    assert.deepEqual(await setNames(), ["KUBE-FOREIGN", "slc4-block", "slc6-peers"]);
  });

  test("a set bigger than the default maxelem", async () => {
    const members = Array.from({ length: 70_000 }, (_, i) => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`);
    const big: IpsetSpec = { name: "slc4-big", type: "hash:ip", family: 4, members };
    await d4.prepare([block, big]);
    assert.match(await nsExec(ns, "ipset", ["list", "-t", "slc4-big"]), /maxelem 262144[\s\S]*Number of entries: 70000/);
    const writes = d4.writes;
    assert.equal((await d4.prepare([block, big])).wrote, false);
    assert.equal(d4.writes, writes);
  });

  test("removeAll takes out this family's sets only; foreign sets keep their members", async () => {
    await d4.removeAll();
    await d6.removeAll();
    assert.deepEqual(await setNames(), ["KUBE-FOREIGN"]);
    assert.deepEqual((await kernelSet("KUBE-FOREIGN"))?.members, ["192.0.2.1"]);
  });
});
