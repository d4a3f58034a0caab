import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { hostRuleset, underlayIpsets } from "../../src/render/hostRules.js";
import { renderTable, withComment } from "../../src/render/ruleset.js";
import { formatRuleset, formatTable } from "../../src/render/iptablesFormat.js";
import { DROP, inIface, jump, outIface, rule, src } from "../../src/render/rules.js";
import { parseSave, planTable } from "../../src/dataplane/iptablesPlan.js";
import { parseCidr, parseIp } from "../../src/model/ip.js";

/** The host ruleset as the iptables driver gets it. */
const hostText = (...args: Parameters<typeof hostRuleset>) => formatRuleset(hostRuleset(...args));
const toWl = (iface: string, prefix = false) => rule(jump("slc-to-wl"), outIface(iface, prefix));

const input = { family: 4 as const, network: parseCidr("10.244.0.0/16"), subnet: parseCidr("10.244.7.0/24"), ipMasq: true, randomFully: true, forwardRules: true };

describe("host rules", () => {
  test("masquerade chain: kube-proxy mark respected, pod-to-pod kept, pod-to-world masqueraded", () => {
    const nat = hostText(input).tables.find((t) => t.table === "nat");
    assert.deepEqual(nat, {
      table: "nat",
      chains: [
        {
          name: "SLUICE-POSTROUTING",
          rules: [
            "-m mark --mark 0x4000/0x4000 -j RETURN",
            "-s 10.244.7.0/24 -d 10.244.0.0/16 -j RETURN",
            "-s 10.244.0.0/16 -d 10.244.7.0/24 -j RETURN",
            "! -s 10.244.0.0/16 -d 10.244.7.0/24 -j RETURN",
            "-s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully",
            "! -s 10.244.0.0/16 -d 10.244.0.0/16 -j MASQUERADE --random-fully",
          ],
        },
      ],
      hooks: [{ builtin: "POSTROUTING", target: "SLUICE-POSTROUTING" }],
    });
  });

  test("without --random-fully support the plain MASQUERADE target is used; IPv6 excludes ff00::/8", () => {
    const v6 = hostText({ ...input, family: 6, network: parseCidr("fd00:244::/56"), subnet: parseCidr("fd00:244:0:7::/64"), randomFully: false });
    const rules = v6.tables.find((t) => t.table === "nat")?.chains[0]?.rules ?? [];
    assert.equal(rules[4], "-s fd00:244::/56 ! -d ff00::/8 -j MASQUERADE");
  });

  test("no --ip-masq: no nat chain and no hook; forward rules accept the cluster network", () => {
    const spec = hostText({ ...input, ipMasq: false });
    assert.deepEqual(spec.tables.find((t) => t.table === "nat"), { table: "nat", chains: [], hooks: [] });
    assert.deepEqual(spec.tables.find((t) => t.table === "filter")?.chains, [{ name: "SLUICE-FORWARD", rules: ["-s 10.244.0.0/16 -j ACCEPT", "-d 10.244.0.0/16 -j ACCEPT"] }]);
  });

  test("the raw table goes with the filter table: the policy's anti-spoofing chains, or none of ours without policy (stale ones are removed)", () => {
    const policy = { rawPreroutingRules: [rule(jump("slc-antispoof"), inIface("slc", true))], rawChains: [{ name: "slc-antispoof", rules: [rule(DROP, inIface("slc0"), src("10.244.7.2/32", true))] }], forwardRules: [], inputRules: [], outputRules: [], chains: [], ipsets: [], localEndpoints: [] };
    const spec = hostText(input, policy);
    assert.deepEqual(spec.tables.map((t) => t.table), ["nat", "raw", "filter"], "raw before filter: a pod's source check is in place before its filter chain");
    assert.deepEqual(spec.tables.find((t) => t.table === "raw"), {
      table: "raw",
      chains: [
        { name: "SLUICE-PREROUTING", rules: ["-i slc+ -j slc-antispoof"] },
        { name: "slc-antispoof", rules: ["! -s 10.244.7.2/32 -i slc0 -j DROP"] },
      ],
      hooks: [{ builtin: "PREROUTING", target: "SLUICE-PREROUTING" }],
    });
    assert.deepEqual(hostRuleset(input).tables.find((t) => t.table === "raw"), { table: "raw", chains: [], hooks: [] });
    assert.deepEqual(hostRuleset(input, policy, ["nat"]).tables.map((t) => t.table), ["nat"]);
  });

  test("policy rules run before the cluster accept rules", () => {
    const spec = hostText({ ...input, forwardPolicyRules: [toWl("slc0")] });
    assert.deepEqual(spec.tables.find((t) => t.table === "filter")?.chains[0]?.rules, ["-o slc0 -j slc-to-wl", "-s 10.244.0.0/16 -j ACCEPT", "-d 10.244.0.0/16 -j ACCEPT"]);
  });
});

describe("underlay trust", () => {
  const peersOf = (list: [string, string][]) => list.map(([ip, net]) => ({ publicIP: parseIp(ip), subnet: parseCidr(net) }));
  const vxlan = { iface: "eth0", tunnel: { device: "sluice.1", port: 8472 }, peers: peersOf([["10.250.0.13", "10.244.3.0/24"], ["10.250.0.12", "10.244.2.0/24"]]) };
  const filter = (spec: ReturnType<typeof hostText>) => spec.tables.find((t) => t.table === "filter");

  test("vxlan: VXLAN from unknown underlay addresses dropped first in INPUT; no pod sends VXLAN; cluster sources from the underlay and the device must be a peer's", () => {
    const spec = hostText({ ...input, underlay: vxlan, forwardPolicyRules: [toWl("slc", true)] });
    assert.deepEqual(filter(spec)?.chains, [
      {
        name: "SLUICE-FORWARD",
        rules: [
          "-s 10.244.0.0/16 -p udp -m udp --dport 8472 -j DROP",
          "-s 10.244.0.0/16 -i eth0 -m set ! --match-set slc4-peer-nets src -j DROP",
          "-s 10.244.0.0/16 -i sluice.1 -m set ! --match-set slc4-peer-nets src -j DROP",
          "-o slc+ -j slc-to-wl",
          "-s 10.244.0.0/16 -j ACCEPT",
          "-d 10.244.0.0/16 -j ACCEPT",
        ],
      },
      { name: "SLUICE-INPUT", rules: ["-p udp -m udp --dport 8472 -m set ! --match-set slc4-peer-hosts src -j DROP"] },
    ]);
    assert.deepEqual(filter(spec)?.hooks, [{ builtin: "FORWARD", target: "SLUICE-FORWARD" }, { builtin: "INPUT", target: "SLUICE-INPUT" }]);
    assert.deepEqual(underlayIpsets({ ...input, underlay: vxlan }), [
      { name: "slc4-peer-hosts", type: "hash:ip", family: 4, members: ["10.250.0.12", "10.250.0.13"] },
      { name: "slc4-peer-nets", type: "hash:net", family: 4, members: ["10.244.2.0/24", "10.244.3.0/24"] },
    ]);
  });

  test("wireguard (an authenticated tunnel): pods may send to its port, a packet without a peer's key is never opened", () => {
    const wg = { ...vxlan, tunnel: { device: "sluice-wg", port: 51820, authenticated: true } };
    const rules = filter(hostText({ ...input, underlay: wg }))?.chains.find((c) => c.name === "SLUICE-FORWARD")?.rules ?? [];
    assert.deepEqual(rules.slice(0, 2), ["-s 10.244.0.0/16 -i eth0 -m set ! --match-set slc4-peer-nets src -j DROP", "-s 10.244.0.0/16 -i sluice-wg -m set ! --match-set slc4-peer-nets src -j DROP"]);
    assert.ok(!rules.some((r) => r.includes("--dport 51820")));
  });

  test("ipip: IP protocol 4 from unknown underlay addresses dropped in INPUT; no pod sends IPIP", () => {
    const ipip = { ...vxlan, tunnel: { device: "sluice.ipip", protocol: "ipencap" as const } };
    const chains = filter(hostText({ ...input, underlay: ipip }))?.chains ?? [];
    assert.deepEqual(chains.find((c) => c.name === "SLUICE-INPUT")?.rules, ["-p ipencap -m set ! --match-set slc4-peer-hosts src -j DROP"]);
    assert.deepEqual(chains.find((c) => c.name === "SLUICE-FORWARD")?.rules.slice(0, 3), [
      "-s 10.244.0.0/16 -p ipencap -j DROP",
      "-s 10.244.0.0/16 -i eth0 -m set ! --match-set slc4-peer-nets src -j DROP",
      "-s 10.244.0.0/16 -i sluice.ipip -m set ! --match-set slc4-peer-nets src -j DROP",
    ]);
    assert.deepEqual(underlayIpsets({ ...input, underlay: ipip }).map((x) => x.name), ["slc4-peer-hosts", "slc4-peer-nets"]);
  });

  test("host-gw: no INPUT rule (no VXLAN), the underlay interface only; IPv6 names its own sets", () => {
    const hg = { iface: "ens3", tunnel: undefined, peers: peersOf([["fd00:250::12", "fd00:244:0:2::/64"]]) };
    const spec = hostText({ ...input, family: 6, network: parseCidr("fd00:244::/56"), subnet: parseCidr("fd00:244:0:7::/64"), underlay: hg });
    assert.deepEqual(filter(spec)?.chains, [{ name: "SLUICE-FORWARD", rules: ["-s fd00:244::/56 -i ens3 -m set ! --match-set slc6-peer-nets src -j DROP", "-s fd00:244::/56 -j ACCEPT", "-d fd00:244::/56 -j ACCEPT"] }]);
    assert.deepEqual(underlayIpsets({ ...input, family: 6, underlay: hg }), [{ name: "slc6-peer-nets", type: "hash:net", family: 6, members: ["fd00:244:0:2::/64"] }]);
  });

  test("no peers known: the sets are empty, so nothing from the underlay is trusted; no underlay input at all: no rules, no sets", () => {
    assert.deepEqual(underlayIpsets({ ...input, underlay: { ...vxlan, peers: [] } }).map((s) => s.members), [[], []]);
    assert.deepEqual(underlayIpsets(input), []);
    assert.deepEqual(filter(hostText(input))?.chains.map((c) => c.name), ["SLUICE-FORWARD"]);
  });
});

describe("rule hashes", () => {
  test("the comment goes right before the target, as iptables-save prints it", () => {
    assert.equal(withComment("-s 1.2.3.0/24 -j ACCEPT", "0123456789abcdef"), '-s 1.2.3.0/24 -m comment --comment "sluice:0123456789abcdef" -j ACCEPT');
    assert.equal(withComment("-j SLUICE-FORWARD", "0123456789abcdef"), '-m comment --comment "sluice:0123456789abcdef" -j SLUICE-FORWARD');
  });

  test("hashes depend on position and content: identical rules in one chain get different hashes", () => {
    const t = renderTable({ table: "filter", chains: [{ name: "SLUICE-X", rules: ["-j ACCEPT", "-j ACCEPT"] }], hooks: [] });
    const [a, b] = t.chains[0]?.rules ?? [];
    assert.ok(a && b);
    assert.match(a.hash, /^[0-9a-f]{16}$/);
    assert.notEqual(a.hash, b.hash);
    const again = renderTable({ table: "filter", chains: [{ name: "SLUICE-X", rules: ["-j ACCEPT", "-j ACCEPT"] }], hooks: [] });
    assert.deepEqual(again, t, "rendering is deterministic");
  });
});

describe("planning against iptables-save", () => {
  const spec = hostRuleset({ ...input, ipMasq: false }).tables.find((t) => t.table === "filter");
  assert.ok(spec);
  const rendered = renderTable(formatTable(spec));
  const chain = rendered.chains[0];
  const hook = rendered.hooks[0];
  assert.ok(chain && hook);
  const inPlace = [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD DROP [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":DOCKER-USER - [0:0]",
    ":SLUICE-FORWARD - [0:0]",
    `-A FORWARD ${hook.rule.body}`,
    "-A FORWARD -j DOCKER-USER",
    ...chain.rules.map((r) => `-A SLUICE-FORWARD ${r.body}`),
    "COMMIT",
  ].join("\n");

  test("nothing to do when everything is in place: no restore input at all", () => {
    const plan = planTable(rendered, parseSave(inPlace).get("filter"));
    assert.equal(plan.restore, undefined);
  });

  test("empty table: chain declared, rules appended, hook inserted first", () => {
    const plan = planTable(rendered, undefined);
    assert.equal(
      plan.restore,
      ["*filter", ":SLUICE-FORWARD - [0:0]", ...chain.rules.map((r) => `-A SLUICE-FORWARD ${r.body}`), `-I FORWARD 1 ${hook.rule.body}`, "COMMIT", ""].join("\n"),
    );
  });

  test("a hook pushed down by another tool is moved back to the top; foreign rules are untouched", () => {
    const pushed = inPlace.replace(`-A FORWARD ${hook.rule.body}\n-A FORWARD -j DOCKER-USER`, `-A FORWARD -j DOCKER-USER\n-A FORWARD ${hook.rule.body}`);
    const plan = planTable(rendered, parseSave(pushed).get("filter"));
    assert.deepEqual(plan.hooksFixed, ["FORWARD"]);
    assert.deepEqual(plan.rewritten, []);
    assert.equal(plan.restore, ["*filter", `-D FORWARD ${hook.rule.body}`, `-I FORWARD 1 ${hook.rule.body}`, "COMMIT", ""].join("\n"));
  });

  test("an edited rule in our chain rewrites that chain only", () => {
    const edited = inPlace.replace(chain.rules[1]?.body ?? "", '-d 10.0.0.0/8 -m comment --comment "sluice:ffffffffffffffff" -j ACCEPT');
    const plan = planTable(rendered, parseSave(edited).get("filter"));
    assert.deepEqual(plan.rewritten, ["SLUICE-FORWARD"]);
    assert.deepEqual(plan.hooksFixed, []);
  });

  test("a stale chain of ours is flushed and deleted; other tools' chains are not", () => {
    const stale = inPlace.replace(":SLUICE-FORWARD - [0:0]", ":SLUICE-FORWARD - [0:0]\n:SLUICE-OLD - [0:0]\n:KUBE-FORWARD - [0:0]");
    const plan = planTable(rendered, parseSave(stale).get("filter"));
    assert.deepEqual(plan.removed, ["SLUICE-OLD"]);
    assert.equal(plan.restore, ["*filter", ":SLUICE-OLD - [0:0]", "-X SLUICE-OLD", "COMMIT", ""].join("\n"));
  });
});
