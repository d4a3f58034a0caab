/**
 * The iptables formatter (src/render/iptablesFormat.ts) beyond the goldens: every match
 * and action kind, the order iptables-save prints matches in, and the rule that it is the
 * one module under src/render and src/policy that writes iptables or ipset syntax.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { formatAction, formatMatch, formatRule, formatRuleset, hookText, ipsetNetMember, ipsetPortMember } from "../../src/render/iptablesFormat.js";
import { ACCEPT, DROP, RETURN, type Action, type Match, ctState, dst, goTo, inIface, inSet, jump, markIs, outIface, protocol, rule, setMark, setsOf, src } from "../../src/render/rules.js";
import { failClosedRuleset, referencedSets, referencingRules } from "../../src/dataplane/policyDataplane.js";
import type { Ruleset } from "../../src/render/ruleset.js";
import { ROOT } from "../helpers/manifests.js";

describe("iptables formatter: matches", () => {
  const cases: Array<[Match, string]> = [
    [inIface("slc0"), "-i slc0"],
    [inIface("slc", true), "-i slc+"],
    [outIface("eth0"), "-o eth0"],
    [outIface("slc", true), "-o slc+"],
    [src("10.0.0.0/8"), "-s 10.0.0.0/8"],
    [src("10.244.1.5/32", true), "! -s 10.244.1.5/32"],
    [dst("fd00::/8"), "-d fd00::/8"],
    [dst("224.0.0.0/4", true), "! -d 224.0.0.0/4"],
    [protocol("ipv6-icmp"), "-p ipv6-icmp"],
    [inSet("slc4-a", ["src"]), "-m set --match-set slc4-a src"],
    [inSet("slc4-b", ["dst", "dst"], true), "-m set ! --match-set slc4-b dst,dst"],
    [{ kind: "ports", protocol: "tcp", dst: { from: 80, to: 80 } }, "-m tcp --dport 80"],
    [{ kind: "ports", protocol: "udp", src: { from: 1000, to: 2000, not: true }, dst: { from: 53, to: 53 } }, "-m udp ! --sport 1000:2000 --dport 53"],
    [{ kind: "ports", protocol: "sctp", dst: { from: 9, to: 10, not: true } }, "-m sctp ! --dport 9:10"],
    [{ kind: "icmp", family: 4, type: 8 }, "-m icmp --icmp-type 8"],
    [{ kind: "icmp", family: 4, type: 3, code: 1, not: true }, "-m icmp ! --icmp-type 3/1"],
    [{ kind: "icmp", family: 6, type: 1, code: 3 }, "-m icmp6 --icmpv6-type 1/3"],
    [markIs({ value: 0, mask: 0x40000 }), "-m mark --mark 0x0/0x40000"],
    [markIs({ value: 0x10000, mask: 0x10000 }), "-m mark --mark 0x10000/0x10000"],
    [ctState("RELATED", "ESTABLISHED"), "-m conntrack --ctstate RELATED,ESTABLISHED"],
  ];
  for (const [m, text] of cases) test(`${m.kind}: ${text}`, () => assert.equal(formatMatch(m), text));
});

describe("iptables formatter: actions", () => {
  const cases: Array<[Action, string]> = [
    [ACCEPT, "-j ACCEPT"],
    [DROP, "-j DROP"],
    [RETURN, "-j RETURN"],
    [jump("slc-from-wl"), "-j slc-from-wl"],
    [goTo("slc-fw-slc0"), "-g slc-fw-slc0"],
    [setMark({ value: 0, mask: 0x70000 }), "-j MARK --set-xmark 0x0/0x70000"],
    [{ kind: "log", prefix: "slc-Ni prod/web r1 " }, '-j LOG --log-prefix "slc-Ni prod/web r1 "'],
    [{ kind: "log", prefix: "p ", limit: { perMinute: 10, burst: 5 } }, '-m limit --limit 10/min --limit-burst 5 -j LOG --log-prefix "p "'],
    [{ kind: "masquerade" }, "-j MASQUERADE"],
    [{ kind: "masquerade", randomFully: true }, "-j MASQUERADE --random-fully"],
  ];
  for (const [a, text] of cases) test(`${a.kind}: ${text}`, () => assert.equal(formatAction(a), text));

  test("a rule without matches is its target alone; a hook is a jump", () => {
    assert.equal(formatRule(rule(DROP)), "-j DROP");
    assert.equal(hookText("SLUICE-FORWARD"), "-j SLUICE-FORWARD");
  });
});

describe("iptables formatter: the order iptables-save prints", () => {
  test("-s -d -i -o -p first, whatever order the rule lists them in", () => {
    const r = rule(DROP, protocol("udp"), outIface("eth1"), inIface("eth0"), dst("10.1.0.0/16"), src("10.0.0.0/8", true));
    assert.equal(formatRule(r), "! -s 10.0.0.0/8 -d 10.1.0.0/16 -i eth0 -o eth1 -p udp -j DROP");
  });

  test("match modules after them, in the rule's order; the log limit last before the target", () => {
    const r = rule(
      { kind: "log", prefix: "x ", limit: { perMinute: 10, burst: 10 } },
      inSet("slc4-b", ["dst"]),
      { kind: "ports", protocol: "tcp", dst: { from: 80, to: 80 } },
      inIface("slc0"),
      inSet("slc4-a", ["src"], true),
      protocol("tcp"),
    );
    assert.equal(formatRule(r), '-i slc0 -p tcp -m set --match-set slc4-b dst -m tcp --dport 80 -m set ! --match-set slc4-a src -m limit --limit 10/min --limit-burst 10 -j LOG --log-prefix "x "');
  });

  test("the underlay trust rule: the address test before the interface (as iptables-save prints it)", () => {
    assert.equal(formatRule(rule(DROP, inIface("eth0"), src("10.244.0.0/16"), inSet("slc4-peer-nets", ["src"], true))), "-s 10.244.0.0/16 -i eth0 -m set ! --match-set slc4-peer-nets src -j DROP");
  });

  test("a ruleset keeps its tables, chains, hooks and rule order", () => {
    const rs: Ruleset = { family: 6, tables: [{ table: "raw", chains: [{ name: "SLUICE-PREROUTING", rules: [rule(jump("slc-antispoof"), inIface("slc", true)), rule(RETURN)] }], hooks: [{ builtin: "PREROUTING", target: "SLUICE-PREROUTING" }] }] };
    assert.deepEqual(formatRuleset(rs), { family: 6, tables: [{ table: "raw", chains: [{ name: "SLUICE-PREROUTING", rules: ["-i slc+ -j slc-antispoof", "-j RETURN"] }], hooks: [{ builtin: "PREROUTING", target: "SLUICE-PREROUTING" }] }] });
  });

  test("ipset members: nomatch exceptions and address,protocol:port", () => {
    assert.equal(ipsetNetMember("10.1.0.0/16"), "10.1.0.0/16");
    assert.equal(ipsetNetMember("10.1.0.0/16", true), "10.1.0.0/16 nomatch");
    assert.equal(ipsetPortMember("10.244.1.5", "tcp", 8080), "10.244.1.5,tcp:8080");
  });
});

describe("set references are read from the structure", () => {
  const rs: Ruleset = {
    family: 4,
    tables: [
      {
        table: "filter",
        chains: [
          { name: "slc-a", rules: [rule(ACCEPT, inSet("slc4-good", ["dst"])), rule(ACCEPT, inSet("slc4-x", ["src"]), inSet("slc4-bad", ["dst", "dst"], true)), rule(DROP)] },
          // A chain whose name looks like a set, and a log prefix that reads like a set match: neither is a reference.
          { name: "slc4-bad", rules: [rule({ kind: "log", prefix: "--match-set slc4-bad " }), rule(RETURN, src("10.0.0.0/8"))] },
        ],
        hooks: [],
      },
    ],
  };

  test("referencedSets and referencingRules: set matches only, negated ones included", () => {
    assert.deepEqual(setsOf(rs.tables[0]?.chains[0]?.rules[1] ?? rule(DROP)), ["slc4-x", "slc4-bad"]);
    assert.deepEqual([...referencedSets(rs)].sort(), ["slc4-bad", "slc4-good", "slc4-x"]);
    assert.deepEqual(
      [...referencingRules(rs, new Set(["slc4-bad"]))].map((r) => `${r.chain}: ${formatRule(r.rule)}`),
      ["slc-a: -m set --match-set slc4-x src -m set ! --match-set slc4-bad dst,dst -j ACCEPT"],
    );
  });

  test("failClosedRuleset: a rule naming a failed set becomes DROP at its position, everything else stays", () => {
    const closed = failClosedRuleset(rs, new Set(["slc4-bad"]));
    assert.deepEqual(
      formatRuleset(closed).tables[0]?.chains.map((c) => c.rules),
      [
        ["-m set --match-set slc4-good dst -j ACCEPT", "-j DROP", "-j DROP"],
        ['-j LOG --log-prefix "--match-set slc4-bad "', "-s 10.0.0.0/8 -j RETURN"],
      ],
    );
    assert.deepEqual(failClosedRuleset(rs, new Set()), rs);
  });
});

describe("iptables syntax lives in the formatter only", () => {
  /** What only iptables or ipset text contains (a target, a match module, restore and ipset-save keywords). */
  const SYNTAX = [/(^|\s)-[jg] /, /(^|\s)-m [a-z]/, /--match-set/, /--ctstate/, /--set-xmark/, /--[sd]port/, /--icmp(v6)?-type/, /--log-prefix/, /(^|\s)-[AIDN] /, /\bCOMMIT\b/, /\bnomatch\b/, /(^|\s)! -[sd] /, /(^|\s)-[io] \S/];
  const FORMATTER = "src/render/iptablesFormat.ts";

  /** The text of every string and template literal of a TypeScript source (comments are documentation, not output). */
  function literals(file: string): string[] {
    const out: string[] = [];
    const sf = ts.createSourceFile(file, readFileSync(join(ROOT, file), "utf8"), ts.ScriptTarget.Latest, true);
    const visit = (n: ts.Node): void => {
      if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) out.push(n.text);
      else if (ts.isTemplateExpression(n)) out.push(n.head.text, ...n.templateSpans.map((s) => s.literal.text));
      else if (ts.isRegularExpressionLiteral(n)) out.push(n.text);
      ts.forEachChild(n, visit);
    };
    visit(sf);
    return out;
  }
  const sources = ["src/render", "src/policy"].flatMap((dir) => readdirSync(join(ROOT, dir)).filter((f) => f.endsWith(".ts")).map((f) => `${dir}/${f}`));

  test("the check sees syntax where it is (the formatter)", () => {
    const found = literals(FORMATTER).filter((l) => SYNTAX.some((re) => re.test(l)));
    assert.ok(found.length >= 10, found.join(" | "));
  });

  for (const file of sources.filter((f) => f !== FORMATTER)) {
    test(`${file} writes no iptables or ipset syntax`, () => {
      const found = literals(file).filter((l) => SYNTAX.some((re) => re.test(l)));
      assert.deepEqual(found, []);
    });
  }
});
