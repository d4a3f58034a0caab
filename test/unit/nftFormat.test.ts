/**
 * The nftables formatter (src/render/nftFormat.ts) and planner (src/dataplane/nftPlan.ts)
 * beyond the goldens: every match and action's nft form, interval sets that hold exactly
 * what the ipset they stand for matches (seeded random prefixes with nomatch exceptions,
 * against a longest-prefix oracle), and the transaction a change turns into.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseNftTable, planNft } from "../../src/dataplane/nftPlan.js";
import { type Family, formatIp, parseCidr, parseIp } from "../../src/model/ip.js";
import type { IpsetSpec } from "../../src/render/ipsetSpec.js";
import { NftMemberError, formatNftAction, formatNftMatch, nftRules, nftSet, nftTable } from "../../src/render/nftFormat.js";
import type { Ruleset } from "../../src/render/ruleset.js";
import { ACCEPT, DROP, RETURN, type Match, type Rule, ctState, dst, goTo, inIface, inSet, jump, markIs, outIface, protocol, rule, setMark, src } from "../../src/render/rules.js";
import { mulberry32 } from "../helpers/golden.js";

describe("nft formatter: matches and actions", () => {
  const cases: Array<[Match, Family, string]> = [
    [inIface("slc", true), 4, 'iifname "slc*"'],
    [outIface("eth0"), 4, 'oifname "eth0"'],
    [src("10.0.0.0/8", true), 4, "ip saddr != 10.0.0.0/8"],
    [dst("fd00::/64"), 6, "ip6 daddr fd00::/64"],
    [protocol("ipv6-icmp"), 6, "meta l4proto ipv6-icmp"],
    [inSet("slc4-a", ["src"], true), 4, "ip saddr != @slc4-a"],
    [inSet("slc6-p", ["dst", "dst"]), 6, "ip6 daddr . meta l4proto . th dport @slc6-p"],
    [{ kind: "ports", protocol: "sctp", src: { from: 1, to: 1 }, dst: { from: 80, to: 90, not: true } }, 4, "sctp sport 1 sctp dport != 80-90"],
    [{ kind: "icmp", family: 4, type: 8 }, 4, "icmp type 8"],
    [{ kind: "icmp", family: 4, type: 3, code: 4 }, 4, "icmp type 3 icmp code 4"],
    [{ kind: "icmp", family: 6, type: 128, not: true }, 6, "icmpv6 type != 128"],
    // Not (type 3 and code 4): one test on the pair, never "type != 3 and code != 4".
    [{ kind: "icmp", family: 4, type: 3, code: 4, not: true }, 4, "icmp type . icmp code != { 3 . 4 }"],
    [markIs({ value: 0, mask: 0x40000 }), 4, "meta mark & 0x40000 == 0x0"],
    [ctState("RELATED", "ESTABLISHED", "UNTRACKED"), 4, "ct state related,established,untracked"],
  ];
  for (const [m, family, text] of cases) test(`${m.kind} -> ${text}`, () => assert.equal(formatNftMatch(m, family), text));

  test("actions, --set-xmark's clear-then-xor kept exactly", () => {
    assert.equal(formatNftAction(setMark({ value: 0x10000, mask: 0x30000 })), "meta mark set meta mark & 0xfffcffff ^ 0x10000");
    assert.equal(formatNftAction(goTo("slc-x")), "goto slc-x");
    assert.equal(formatNftAction(jump("slc-y")), "jump slc-y");
    assert.deepEqual([ACCEPT, DROP, RETURN].map(formatNftAction), ["accept", "drop", "return"]);
    assert.equal(formatNftAction({ kind: "log", prefix: 'sluice "drop" ', limit: { perMinute: 10, burst: 5 } }), "limit rate 10/minute burst 5 packets log prefix \"sluice 'drop' \"");
    assert.equal(formatNftAction({ kind: "masquerade", randomFully: true }), "masquerade fully-random");
  });
});

describe("nft formatter: endpoint dispatch as one verdict map", () => {
  const entry = (iface: string): Rule => rule(goTo(`slc-fw-${iface}`), inIface(iface));
  test("a run of one-interface gotos at a chain's head becomes one vmap lookup; the rules after it stay", () => {
    const bodies = nftRules(4, "slc-from-wl", [entry("slca"), entry("slcb"), entry("slcc"), rule(DROP)]).map((r) => r.text.replace(/ comment "sluice:[0-9a-f]+"$/, ""));
    assert.deepEqual(bodies, ['iifname vmap { "slca" : goto slc-fw-slca, "slcb" : goto slc-fw-slcb, "slcc" : goto slc-fw-slcc }', "drop"]);
  });
  test("not when a linear scan could decide otherwise: a repeated name, a prefix, a second match, mixed directions, a single entry", () => {
    const plain = (rules: Rule[]): boolean => nftRules(4, "c", rules).every((r) => !r.text.includes("vmap"));
    assert.equal(plain([entry("slca"), entry("slca")].slice(0, 1)), true, "one entry: nothing to gain");
    assert.equal(nftRules(4, "c2", [entry("slca"), entry("slca"), entry("slcb")])[0]?.text.includes("vmap"), false, "a repeated name ends the run before it has two");
    assert.equal(plain([rule(goTo("x"), inIface("slc", true)), entry("slcb")]), true, "a prefix match is no map key");
    assert.equal(plain([rule(goTo("x"), inIface("slca"), src("10.0.0.1/32")), entry("slcb")]), true);
    assert.equal(plain([entry("slca"), rule(goTo("y"), outIface("slcb"))]), true);
  });
});

describe("nft formatter: sets hold exactly what their ipset matches", () => {
  /** The kernel's hash:net rule: the longest member prefix containing the address decides; nomatch means no. */
  const oracle = (members: string[], addr: bigint, family: Family): boolean => {
    let best: { len: number; match: boolean } | undefined;
    for (const m of members) {
      const [net, flag] = m.split(" ");
      const c = parseCidr(net as string);
      const size = 1n << BigInt((family === 4 ? 32 : 128) - c.prefixLen);
      if (addr >= c.ip && addr < c.ip + size && (!best || c.prefixLen > best.len)) best = { len: c.prefixLen, match: flag === undefined };
    }
    return best?.match ?? false;
  };
  const inElements = (elements: string[], addr: bigint, family: Family): boolean =>
    elements.some((e) => {
      if (e.includes("-")) {
        const [a, b] = e.split("-").map((x) => parseIp(x).value) as [bigint, bigint];
        return addr >= a && addr <= b;
      }
      const c = parseCidr(e.includes("/") ? e : `${e}/${family === 4 ? 32 : 128}`);
      return addr >= c.ip && addr < c.ip + (1n << BigInt((family === 4 ? 32 : 128) - c.prefixLen));
    });

  test("seeded random prefixes with nested nomatch exceptions: every edge address agrees with the longest-prefix oracle", () => {
    const rnd = mulberry32(20261204);
    let checked = 0;
    for (let round = 0; round < 300; round++) {
      const members: string[] = [];
      for (let i = 0; i < 1 + Math.floor(rnd() * 8); i++) {
        const len = 8 + Math.floor(rnd() * 25);
        const ip = (BigInt(Math.floor(rnd() * 2 ** 16)) << 16n) & ~((1n << BigInt(32 - len)) - 1n);
        const text = `${formatIp({ family: 4, value: (10n << 24n) | (ip & 0xffffffn) })}/${len}`;
        const c = parseCidr(text);
        members.push(`${formatIp({ family: 4, value: c.ip })}/${c.prefixLen}${rnd() < 0.4 ? " nomatch" : ""}`);
      }
      const elements = nftSet({ name: "slc4-r", type: "hash:net", family: 4, members }).elements;
      const probes = members.flatMap((m) => {
        const c = parseCidr(m.split(" ")[0] as string);
        const end = c.ip + (1n << BigInt(32 - c.prefixLen)) - 1n;
        return [c.ip - 1n, c.ip, c.ip + 1n, end - 1n, end, end + 1n];
      });
      for (const p of probes) {
        assert.equal(inElements(elements, p, 4), oracle(members, p, 4), `${formatIp({ family: 4, value: p })} in ${members.join(", ")} -> ${elements.join(", ")}`);
        checked++;
      }
    }
    assert.ok(checked > 3000, `only ${checked} addresses checked`);
  });

  test("elements are disjoint, sorted and never adjacent (nft refuses overlaps; a delete must name an element exactly)", () => {
    const s = nftSet({ name: "slc4-x", type: "hash:net", family: 4, members: ["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "192.168.0.0/16", "192.168.3.0/24 nomatch"] });
    assert.deepEqual(s.elements, ["10.0.0.0/23", "192.168.0.0-192.168.2.255", "192.168.4.0-192.168.255.255"]);
  });

  test("address-and-port members become concatenations; bad members are refused by name", () => {
    assert.deepEqual(nftSet({ name: "slc6-p", type: "hash:ip,port", family: 6, members: ["fd00::5,udp:53", "fd00::5,tcp:80"] }).elements, ["fd00::5 . tcp . 80", "fd00::5 . udp . 53"]);
    const bad: IpsetSpec[] = [
      { name: "slc4-a", type: "hash:ip,port", family: 4, members: ["10.0.0.1,icmp:8"] },
      { name: "slc4-b", type: "hash:ip", family: 4, members: ["10.0.0.0/24"] },
      { name: "slc4-c", type: "hash:net", family: 4, members: ["fd00::/64"] },
      { name: "slc4-d", type: "hash:net", family: 4, members: ["10.0.0.0/8 maybe"] },
    ];
    for (const b of bad) assert.throws(() => nftSet(b), (e: Error) => e instanceof NftMemberError && e.message.startsWith(`set ${b.name}: `), b.name);
  });
});

describe("nft planner", () => {
  const ruleset = (extra = false): Ruleset => ({
    family: 4,
    tables: [
      {
        table: "filter",
        chains: [
          { name: "SLUICE-FORWARD", rules: [rule(jump("slc-a"), inSet("slc4-s", ["src"])), ...(extra ? [rule(jump("slc-b"))] : [])] },
          { name: "slc-a", rules: [rule(ACCEPT)] },
          ...(extra ? [{ name: "slc-b", rules: [rule(DROP)] }] : []),
        ],
        hooks: [{ builtin: "FORWARD", target: "SLUICE-FORWARD" }],
      },
    ],
  });
  const set = (members: string[], type: IpsetSpec["type"] = "hash:net"): IpsetSpec => ({ name: "slc4-s", type, family: 4, members });

  test("nothing there: the table whole; the same again: nothing", () => {
    const t = nftTable(ruleset(), [nftSet(set(["10.0.0.0/8"]))]);
    const p = planNft(undefined, t);
    assert.equal(p.replaced, true);
    assert.doesNotMatch(p.script, /delete table/);
    assert.equal(planNft(t, nftTable(ruleset(), [nftSet(set(["10.0.0.0/8"]))])).script, "");
  });

  test("a change is a delta in nft's order: element deletes before adds, new chains before the rules that jump to them, removals last", () => {
    const a = nftTable(ruleset(true), [nftSet(set(["10.0.0.0/8"]))]);
    const b = nftTable(ruleset(), [nftSet(set(["10.0.0.0/8", "10.1.0.0/16 nomatch"]))]);
    const grow = planNft(b, a).script.split("\n");
    assert.deepEqual(grow.slice(0, 2), ["delete element ip sluice slc4-s { 10.0.0.0/16, 10.2.0.0-10.255.255.255 }", "add element ip sluice slc4-s { 10.0.0.0/8 }"]);
    assert.ok(grow.indexOf("add chain ip sluice slc-b") < grow.findIndex((l) => l.includes("jump slc-b")));
    const shrink = planNft(a, b).script.split("\n").filter(Boolean);
    assert.deepEqual(shrink.slice(-2), ["flush chain ip sluice slc-b", "delete chain ip sluice slc-b"]);
    assert.ok(shrink.indexOf("flush chain ip sluice SLUICE-FORWARD") < shrink.indexOf("delete chain ip sluice slc-b"), "the jump goes before its target");
  });

  test("what cannot change in place (a set's type) replaces the table, in the same transaction", () => {
    const a = nftTable(ruleset(), [nftSet(set(["10.0.0.1"], "hash:ip"))]);
    const b = nftTable(ruleset(), [nftSet(set(["10.0.0.0/8"]))]);
    const p = planNft(a, b);
    assert.equal(p.replaced, true);
    assert.match(p.script, /^add table ip sluice\ndelete table ip sluice\nadd table ip sluice\n/);
  });

  test("read back: chains belong to the table of the base chain that reaches them; a chain no base chain reaches belongs to none", () => {
    const json = JSON.stringify({
      nftables: [
        { chain: { name: "raw-prerouting", hook: "prerouting", type: "filter", prio: -300, policy: "accept" } },
        { chain: { name: "SLUICE-PREROUTING" } },
        { chain: { name: "slc-antispoof" } },
        { chain: { name: "stray" } },
        { rule: { chain: "raw-prerouting", comment: "sluice:aaaa", expr: [{ jump: { target: "SLUICE-PREROUTING" } }] } },
        { rule: { chain: "SLUICE-PREROUTING", expr: [{ goto: { target: "slc-antispoof" } }] } },
        { set: { name: "slc4-s", type: ["ipv4_addr", "inet_proto", "inet_service"], elem: [{ concat: ["10.0.0.1", "tcp", 80] }] } },
      ],
    });
    const t = parseNftTable(json, 4);
    assert.deepEqual(t.chains.map((c) => [c.name, c.table]), [["raw-prerouting", "raw"], ["SLUICE-PREROUTING", "raw"], ["slc-antispoof", "raw"], ["stray", undefined]]);
    assert.deepEqual(t.chains[0]?.rules.map((r) => r.hash), ["aaaa"]);
    assert.deepEqual(t.chains[1]?.rules.map((r) => r.hash), [""], "a rule without our comment counts as changed");
    assert.deepEqual(t.sets, [{ name: "slc4-s", type: "ipv4_addr . inet_proto . inet_service", interval: false, elements: ["10.0.0.1 . tcp . 80"] }]);
  });
});
