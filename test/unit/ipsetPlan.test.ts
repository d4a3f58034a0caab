import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CanonicalMemo,
  type IpsetState,
  canonicalMembers,
  maxelemFor,
  memberText,
  parseIpsetList,
  planPrepare,
  planRemoveStale,
  stateAfter,
  tempName,
} from "../../src/dataplane/ipsetPlan.js";
import type { IpsetSpec } from "../../src/render/ipsetSpec.js";
import { mulberry32 } from "../helpers/golden.js";

/** What `ipset list` printed on this machine (ipset 7.17), trimmed to three sets. */
const LIST = `Name: slc4-a
Type: hash:net
Revision: 7
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2082317c
Size in memory: 552
References: 2
Number of entries: 3
Members:
10.1.0.0/16 nomatch
10.0.0.0/8
10.9.9.9

Name: KUBE-FOREIGN
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
Size in memory: 296
References: 0
Number of entries: 1
Members:
192.0.2.1

Name: slc4-b
Type: hash:ip,port
Revision: 7
Header: family inet hashsize 1024 maxelem 131072 bucketsize 12 initval 0x5dc2c920
Size in memory: 264
References: 0
Number of entries: 1
Members:
10.244.1.5,tcp:80

Name: slct-0123456789abcdef0123
Type: hash:ip
Revision: 6
Header: family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0x5dc2c920
Size in memory: 264
References: 0
Number of entries: 0
Members:
`;

const state = (s: Partial<IpsetState> & Pick<IpsetState, "name">): IpsetState => ({ type: "hash:ip", family: "inet", maxelem: 65536, references: 0, members: [], ...s });
const mapOf = (...sets: IpsetState[]): Map<string, IpsetState> => new Map(sets.map((s) => [s.name, s]));
const lines = (text: string | undefined): string[] => (text ?? "").split("\n").filter(Boolean);

describe("ipset list parsing", () => {
  test("reads only our sets: type, family, maxelem, references, members as printed", () => {
    const sets = parseIpsetList(LIST);
    assert.deepEqual([...sets.keys()], ["slc4-a", "slc4-b", "slct-0123456789abcdef0123"]);
    assert.deepEqual(sets.get("slc4-a"), { name: "slc4-a", type: "hash:net", family: "inet", maxelem: 65536, references: 2, members: ["10.1.0.0/16 nomatch", "10.0.0.0/8", "10.9.9.9"] });
    assert.equal(sets.get("slc4-b")?.maxelem, 131072);
    assert.deepEqual(sets.get("slct-0123456789abcdef0123")?.members, []);
    assert.equal(sets.get("slct-0123456789abcdef0123")?.family, "inet6");
  });
});

describe("canonical members (the form ipset prints)", () => {
  const one = (type: IpsetSpec["type"], family: 4 | 6, m: string): string[] => canonicalMembers(type, family, m).map(memberText);
  test("hash:net: host bits cleared, full-length prefixes printed bare, nomatch kept, IPv6 compressed", () => {
    assert.deepEqual(one("hash:net", 4, "10.9.9.0/23"), ["10.9.8.0/23"]);
    assert.deepEqual(one("hash:net", 4, "10.9.9.9/32"), ["10.9.9.9"]);
    assert.deepEqual(one("hash:net", 4, "10.1.2.0/24 nomatch"), ["10.1.2.0/24 nomatch"]);
    assert.deepEqual(one("hash:net", 6, "FD00:0:0:1::5/64  nomatch"), ["fd00:0:0:1::/64 nomatch"]);
    assert.deepEqual(one("hash:net", 6, "fd00:0:0:0::1/128"), ["fd00::1"]);
  });
  test("hash:net /0, which the kernel refuses, becomes its two halves", () => {
    assert.deepEqual(one("hash:net", 4, "0.0.0.0/0"), ["0.0.0.0/1", "128.0.0.0/1"]);
    assert.deepEqual(one("hash:net", 6, "::/0"), ["::/1", "8000::/1"]);
  });
  test("hash:ip and hash:ip,port", () => {
    assert.deepEqual(one("hash:ip", 4, "10.244.1.5/32"), ["10.244.1.5"]);
    assert.deepEqual(one("hash:ip", 6, "fd00:0::0001"), ["fd00::1"]);
    assert.deepEqual(one("hash:ip,port", 4, "10.244.1.5,TCP:080"), ["10.244.1.5,tcp:80"]);
    assert.deepEqual(one("hash:ip,port", 4, "10.244.1.5,53"), ["10.244.1.5,tcp:53"]);
    assert.deepEqual(one("hash:ip,port", 6, "fd00::1,udp:53"), ["fd00::1,udp:53"]);
    assert.deepEqual(one("hash:ip,port", 4, "10.0.0.1,sctp:9"), ["10.0.0.1,sctp:9"]);
  });
  test("refuses what we never write, naming the member", () => {
    assert.throws(() => one("hash:ip", 4, "10.0.0.0/24"), /10\.0\.0\.0\/24.*single addresses/);
    assert.throws(() => one("hash:ip", 4, "fd00::1"), /not an IPv4 address/);
    assert.throws(() => one("hash:ip", 4, "10.0.0.1 nomatch"), /nomatch/);
    assert.throws(() => one("hash:ip,port", 4, "10.0.0.1,tcp:http"), /port number/);
    assert.throws(() => one("hash:ip,port", 4, "10.0.0.1,tcp:80-81"), /port number/);
    assert.throws(() => one("hash:ip,port", 4, "10.0.0.1,icmp:ping"), /protocol "icmp"/);
    assert.throws(() => one("hash:net", 4, "10.0.0.0/33"), /prefix length/);
  });
});

describe("planPrepare", () => {
  const net: IpsetSpec = { name: "slc4-net", type: "hash:net", family: 4, members: ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.9.9.9/32"] };
  const ports: IpsetSpec = { name: "slc4-ports", type: "hash:ip,port", family: 4, members: ["10.244.1.5,tcp:80", "10.244.1.6,udp:53"] };

  test("new sets: created with family and maxelem, members added", () => {
    const plan = planPrepare(4, [net, ports], new Map());
    assert.deepEqual(plan.created, ["slc4-net", "slc4-ports"]);
    assert.deepEqual(lines(plan.restore), [
      "create slc4-net hash:net family inet maxelem 65536",
      "add slc4-net 10.0.0.0/8",
      "add slc4-net 10.1.0.0/16 nomatch",
      "add slc4-net 10.9.9.9",
      "create slc4-ports hash:ip,port family inet maxelem 65536",
      "add slc4-ports 10.244.1.5,tcp:80",
      "add slc4-ports 10.244.1.6,udp:53",
    ]);
  });

  test("what the kernel prints for what we wrote compares equal: no restore at all", () => {
    const actual = mapOf(
      state({ name: "slc4-net", type: "hash:net", members: ["10.9.9.9", "10.1.0.0/16 nomatch", "10.0.0.0/8"], references: 3 }),
      state({ name: "slc4-ports", type: "hash:ip,port", members: ["10.244.1.6,udp:53", "10.244.1.5,tcp:80"] }),
      state({ name: "slc6-other", type: "hash:ip", family: "inet6", members: ["fd00::1"] }),
    );
    const plan = planPrepare(4, [net, ports], actual);
    assert.equal(plan.restore, undefined);
    assert.equal(plan.memberOps, 0);
  });

  test("a full replacement goes through a temporary set and swap", () => {
    const actual = mapOf(state({ name: "slc4-ports", type: "hash:ip,port", members: ["10.244.9.9,tcp:80", "10.244.9.8,tcp:80"], references: 1 }));
    const plan = planPrepare(4, [ports], actual);
    const tmp = tempName("slc4-ports", new Set());
    assert.ok(tmp.startsWith("slct-") && tmp.length <= 31);
    assert.deepEqual(plan.swapped, ["slc4-ports"]);
    assert.deepEqual(lines(plan.restore), [
      `create ${tmp} hash:ip,port family inet maxelem 65536`,
      `add ${tmp} 10.244.1.5,tcp:80`,
      `add ${tmp} 10.244.1.6,udp:53`,
      `swap ${tmp} slc4-ports`,
      `destroy ${tmp}`,
    ]);
  });

  test("a flushed set is swapped (refilled atomically)", () => {
    const plan = planPrepare(4, [net], mapOf(state({ name: "slc4-net", type: "hash:net", members: [] })));
    assert.deepEqual(plan.swapped, ["slc4-net"]);
  });

  test("a small diff is applied in place, shrinking operations first", () => {
    const big: IpsetSpec = { name: "slc4-net", type: "hash:net", family: 4, members: ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16", "10.5.0.0/16 nomatch", "10.6.0.0/16", "10.10.0.0/16", "10.11.0.0/16"] };
    const actual = mapOf(
      state({
        name: "slc4-net",
        type: "hash:net",
        // 10.1/16 nomatch missing, 10.5/16 plain instead of nomatch, an extra 10.7/16, an extra exception 10.8/16
        members: ["10.0.0.0/8", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16", "10.5.0.0/16", "10.6.0.0/16", "10.7.0.0/16", "10.8.0.0/16 nomatch", "10.10.0.0/16", "10.11.0.0/16"],
      }),
    );
    const plan = planPrepare(4, [big], actual);
    assert.deepEqual(plan.updated, ["slc4-net"]);
    assert.deepEqual(lines(plan.restore), [
      "add slc4-net 10.1.0.0/16 nomatch",
      "add slc4-net 10.5.0.0/16 nomatch",
      "del slc4-net 10.7.0.0/16",
      "del slc4-net 10.8.0.0/16",
    ]);
    assert.equal(plan.memberOps, 4);
  });

  test("a member someone added is deleted in place", () => {
    const actual = mapOf(state({ name: "slc4-net", type: "hash:net", members: ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.9.9.9", "192.0.2.0/24"] }));
    assert.deepEqual(lines(planPrepare(4, [net], actual).restore), ["del slc4-net 192.0.2.0/24"]);
  });

  test("a set too small for its members is replaced by a bigger one", () => {
    const many: IpsetSpec = { name: "slc4-many", type: "hash:ip", family: 4, members: Array.from({ length: 40000 }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`) };
    const actual = mapOf(state({ name: "slc4-many", maxelem: 1024, members: many.members.slice(0, 1024) }));
    const plan = planPrepare(4, [many], actual);
    assert.deepEqual(plan.swapped, ["slc4-many"]);
    assert.match(lines(plan.restore)[0] ?? "", /maxelem 131072$/);
    assert.equal(maxelemFor(10), 65536);
    assert.equal(maxelemFor(40000), 131072);
  });

  test("same name, other type: recreated when unreferenced, blocked when a rule uses it", () => {
    const wrong = state({ name: "slc4-net", type: "hash:ip", members: ["10.0.0.1"] });
    const free = planPrepare(4, [net], mapOf(wrong));
    assert.deepEqual(free.recreated, ["slc4-net"]);
    assert.deepEqual(lines(free.restore).slice(0, 2), ["destroy slc4-net", "create slc4-net hash:net family inet maxelem 65536"]);
    const used = planPrepare(4, [net], mapOf({ ...wrong, references: 1 }));
    assert.deepEqual(used.blocked, ["slc4-net"]);
    assert.equal(used.restore, undefined);
    const otherFamily = planPrepare(4, [net], mapOf(state({ name: "slc4-net", type: "hash:net", family: "inet6" })));
    assert.deepEqual(otherFamily.recreated, ["slc4-net"]);
  });

  test("leftover temporaries of this family are destroyed; the other family's are not", () => {
    const actual = mapOf(state({ name: "slct-aaaa", family: "inet" }), state({ name: "slct-bbbb", family: "inet6" }), state({ name: "slct-cccc", family: "inet", references: 1 }));
    const plan = planPrepare(4, [], actual);
    assert.deepEqual(plan.destroyed, ["slct-aaaa"]);
  });

  test("a member whose printed form we do not understand forces a swap", () => {
    const actual = mapOf(state({ name: "slc4-ports", type: "hash:ip,port", members: ["10.244.1.5,tcp:80", "10.244.1.6,udp:53", "10.244.1.7,icmp:echo-request"] }));
    assert.deepEqual(planPrepare(4, [ports], actual).swapped, ["slc4-ports"]);
  });

  test("bad desired sets (names, families) are refused before anything is planned", () => {
    assert.throws(() => planPrepare(4, [{ ...net, family: 6 }], new Map()), /family 6/);
    assert.throws(() => planPrepare(4, [{ ...net, name: "slc6-x" }], new Map()), /named slc4-/);
    assert.throws(() => planPrepare(4, [{ ...net, name: `slc4-${"x".repeat(27)}` }], new Map()), /31 characters/);
    assert.throws(() => planPrepare(4, [net, net], new Map()), /listed twice/);
  });

  test("a set with a member we cannot write is refused alone, naming the member; the others are planned, one chunk per set", () => {
    const both: IpsetSpec = { ...net, name: "slc4-both", members: ["10.0.0.0/8", "10.0.0.0/8 nomatch"] };
    const notV4: IpsetSpec = { name: "slc4-ip", type: "hash:ip", family: 4, members: ["10.244.1.5", "fd00::5"] };
    const plan = planPrepare(4, [both, net, notV4, ports], mapOf(state({ name: "slct-old" })));
    assert.deepEqual(plan.refused.map((r) => r.name), ["slc4-both", "slc4-ip"]);
    assert.match(plan.refused[0]?.reason ?? "", /both with and without nomatch/);
    assert.match(plan.refused[1]?.reason ?? "", /slc4-ip member "fd00::5": .*not an IPv4 address/);
    assert.deepEqual(plan.created, ["slc4-net", "slc4-ports"]);
    assert.deepEqual(plan.chunks.map((c) => c.set), [undefined, "slc4-net", "slc4-ports"], "leftover temporaries first, then set by set");
    assert.deepEqual(plan.chunks[0]?.lines, ["destroy slct-old"]);
    assert.equal(plan.restore, `${plan.chunks.flatMap((c) => c.lines).join("\n")}\n`, "the whole restore is the chunks in order");
    assert.ok(!(plan.restore ?? "").includes("slc4-both") && !(plan.restore ?? "").includes("slc4-ip "), "nothing of the refused sets is written");
  });
});

describe("planRemoveStale", () => {
  test("destroys this family's owned sets that are not desired, skips referenced ones and everything else", () => {
    const actual = mapOf(
      state({ name: "slc4-keep" }),
      state({ name: "slc4-old" }),
      state({ name: "slc4-used", references: 1 }),
      state({ name: "slc6-old", family: "inet6" }),
      state({ name: "slct-old", family: "inet" }),
    );
    const plan = planRemoveStale(4, [{ name: "slc4-keep", type: "hash:ip", family: 4, members: [] }], actual);
    assert.deepEqual(plan.destroyed, ["slc4-old", "slct-old"]);
    assert.deepEqual(plan.inUse, ["slc4-used"]);
    assert.deepEqual(lines(plan.restore), ["destroy slc4-old", "destroy slct-old"]);
    assert.equal(planRemoveStale(4, [], mapOf(state({ name: "slc6-x", family: "inet6" }))).restore, undefined);
  });
});

/**
 * What a hash:net answers for an address: the flag of its most specific containing
 * element (nomatch: no match), no match when none contains it. Members as ipset prints them.
 */
function netMatches(members: ReadonlyMap<string, boolean>, addr: number): boolean {
  let best = -1;
  let match = false;
  for (const [key, nomatch] of members) {
    const [a, l] = key.split("/");
    const len = l === undefined ? 32 : Number(l);
    const base = (a ?? "").split(".").reduce((v, o) => v * 256 + Number(o), 0);
    const size = 2 ** (32 - len);
    if (addr >= base && addr < base + size && len > best) [best, match] = [len, !nomatch];
  }
  return match;
}

const asMap = (members: readonly string[]): Map<string, boolean> => new Map(members.map((m) => [m.split(" ")[0] as string, m.endsWith(" nomatch")]));

describe("in-place updates: no address in both the old and the new set is ever unmatched, none in neither is ever matched", () => {
  test("a prefix replaced by its halves is swapped, not deleted then added (a Deny set would let 10.0.0.5 through)", () => {
    const rest = Array.from({ length: 12 }, (_, i) => `172.${16 + i}.0.0/16`);
    const before = ["10.0.0.0/8", ...rest];
    const after = ["10.0.0.0/9", "10.128.0.0/9", ...rest];
    const plan = planPrepare(4, [{ name: "slc4-deny", type: "hash:net", family: 4, members: after }], mapOf(state({ name: "slc4-deny", type: "hash:net", members: before })));
    assert.deepEqual(plan.swapped, ["slc4-deny"]);
    assert.deepEqual(plan.updated, []);
  });

  test("random small diffs of nested prefixes and exceptions, replayed op by op", () => {
    const rnd = mulberry32(11);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    // Prefixes that nest: /8, /12, /16, /24 inside 10/8, and unrelated /16s to make the diff small.
    const pool = ["10.0.0.0/8", "10.0.0.0/12", "10.16.0.0/12", "10.1.0.0/16", "10.2.0.0/16", "10.17.0.0/16", "10.1.1.0/24", "10.1.2.0/24", "10.17.5.0/24", "10.1.1.7"];
    const filler = Array.from({ length: 16 }, (_, i) => `192.168.${i}.0/24`);
    const probes = [0x0a000005, 0x0a010105, 0x0a010107, 0x0a010205, 0x0a020001, 0x0a110505, 0x0a110105, 0x0a300001, 0x0a100001, 0x0b000001];
    let inPlace = 0;
    let swapped = 0;
    for (let round = 0; round < 400; round++) {
      const draw = (): string[] => pool.filter(() => rnd() < 0.5).map((k) => (rnd() < 0.3 ? `${k} nomatch` : k));
      const before = [...draw(), ...filler];
      const after = rnd() < 0.5 ? before.map((m) => (rnd() < 0.15 ? (m.endsWith(" nomatch") ? m.slice(0, -8) : `${m} nomatch`) : m)).filter(() => rnd() < 0.92) : [...draw(), ...filler];
      if (rnd() < 0.3) after.push(pick(pool));
      const spec: IpsetSpec = { name: "slc4-x", type: "hash:net", family: 4, members: [...new Map(after.map((m) => [m.split(" ")[0], m])).values()] };
      const plan = planPrepare(4, [spec], mapOf(state({ name: "slc4-x", type: "hash:net", members: before })));
      if (!plan.updated.length) {
        swapped += plan.swapped.length;
        continue;
      }
      inPlace++;
      const oldSet = asMap(before);
      const newSet = asMap(spec.members);
      const cur = new Map(oldSet);
      const steps = [new Map(cur)];
      for (const line of lines(plan.restore)) {
        const [op, , member, flag] = line.split(" ");
        if (op === "del") cur.delete(member as string);
        else cur.set(member as string, flag === "nomatch");
        steps.push(new Map(cur));
      }
      assert.deepEqual([...cur].sort(), [...newSet].sort(), `round ${round}: the plan ends at the new set`);
      for (const a of probes) {
        const [o, n] = [netMatches(oldSet, a), netMatches(newSet, a)];
        for (const st of steps) if (o === n) assert.equal(netMatches(st, a), o, `round ${round}: ${a.toString(16)} changed in between (${before.join(", ")} -> ${spec.members.join(", ")}): ${lines(plan.restore).join("; ")}`);
      }
    }
    assert.ok(inPlace > 50 && swapped > 20, `both paths taken: ${inPlace} in place, ${swapped} swapped`);
  });
});

describe("planning against the driver's record", () => {
  const spec = (members: string[]): IpsetSpec => ({ name: "slc4-r", type: "hash:net", family: 4, members });
  const plainState = (members: string[]): IpsetState => ({ name: "slc4-r", type: "hash:net", family: "inet", maxelem: 65536, references: 3, members });

  test("the record after a plan is what the plan wrote, with no references and no destroyed sets", () => {
    const before = new Map([
      ["slc4-r", plainState(["10.0.0.0/8"])],
      ["slc4-gone", { ...plainState([]), name: "slc4-gone" }],
      ["slc6-other", { ...plainState([]), name: "slc6-other", family: "inet6" }],
    ]);
    const plan = planPrepare(4, [spec(["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.2.3.4/32"])], before);
    const after = stateAfter(4, before, { ...plan, destroyed: [...plan.destroyed, "slc4-gone"] });
    assert.deepEqual([...after.keys()], ["slc4-r"], "only this family's sets, the destroyed one gone");
    assert.deepEqual(after.get("slc4-r")?.members, ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.2.3.4"], "canonical, as ipset prints them");
    assert.equal(after.get("slc4-r")?.references, 0);
    // Planned again against that record: nothing to write, whatever order or form the members come in.
    assert.equal(planPrepare(4, [spec(["10.2.3.4", "10.1.0.0/16 nomatch", "10.0.0.0/8"])], after).restore, undefined);
  });

  test("with a memo, an unchanged set is not planned again; a changed one is", () => {
    const memo = new CanonicalMemo();
    const first = planPrepare(4, [spec(["10.0.0.0/8", "10.1.0.0/16"])], new Map(), memo);
    const record = stateAfter(4, new Map(), first);
    const same = planPrepare(4, [spec(["10.0.0.0/8", "10.1.0.0/16"])], record, memo);
    assert.equal(same.restore, undefined);
    assert.equal(same.after[0]?.members, first.after[0]?.members, "the same recorded lines: compared by identity, not member by member");
    const changed = planPrepare(4, [spec(["10.0.0.0/8", "10.1.0.0/16", "10.3.0.0/16"])], stateAfter(4, record, same), memo);
    assert.deepEqual(lines(changed.restore), ["add slc4-r 10.3.0.0/16"]);
    // A member the planner cannot write is refused afresh, not served from the memo.
    const bad = planPrepare(4, [spec(["10.0.0.0/8", "not-an-address"])], record, memo);
    assert.equal(bad.refused[0]?.name, "slc4-r");
  });

  test("a member parsed for one set's type is parsed again for another's, and plans with the memo equal plans without", () => {
    const memo = new CanonicalMemo();
    planPrepare(4, [{ name: "slc4-n", type: "hash:net", family: 4, members: ["10.0.0.0/16", "10.0.0.7"] }], new Map(), memo);
    const asIp = planPrepare(4, [{ name: "slc4-i", type: "hash:ip", family: 4, members: ["10.0.0.0/16"] }], new Map(), memo);
    assert.equal(asIp.refused[0]?.name, "slc4-i", "a prefix is no hash:ip member, whatever a hash:net set made of it");
    const rand = mulberry32(11);
    const pool = ["10.0.0.1", "10.0.0.1/32", "10.0.1.0/24", "10.0.1.0/24 nomatch", "10.9.0.0/16", "0.0.0.0/0", "10.0.0.2", "192.168.0.0/30"];
    let withMemo = new Map<string, IpsetState>();
    let without = new Map<string, IpsetState>();
    for (let step = 0; step < 300; step++) {
      const members = pool.filter(() => rand() < 0.4).filter((m, _, all) => !(m.endsWith(" nomatch") && all.includes(m.replace(" nomatch", ""))));
      const desired: IpsetSpec[] = [{ name: `slc4-s${step % 3}`, type: "hash:net", family: 4, members }];
      const a = planPrepare(4, desired, withMemo, memo);
      const b = planPrepare(4, desired, without);
      assert.equal(a.restore, b.restore, `step ${step}`);
      withMemo = stateAfter(4, withMemo, a);
      without = stateAfter(4, without, b);
    }
  });

  test("a memo entry never stands for another type or family under the same name", () => {
    const memo = new CanonicalMemo();
    planPrepare(4, [spec(["10.0.0.1"])], new Map(), memo);
    const asIp: IpsetSpec = { name: "slc4-r", type: "hash:ip", family: 4, members: ["10.0.0.1"] };
    const plan = planPrepare(4, [asIp], new Map(), memo);
    assert.equal(plan.after[0]?.type, "hash:ip");
    assert.deepEqual(plan.after[0]?.members, ["10.0.0.1"]);
  });
});
