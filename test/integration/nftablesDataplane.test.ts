/**
 * The native nftables dataplane against the real kernel, in a throwaway namespace: one
 * transaction per apply, deltas only (rule handles of untouched chains survive, so their
 * counters do), no-op applies that write nothing, read-back that equals the record,
 * drift repair, a restart that writes nat first and keeps the policy, refused sets failing
 * closed for their rules only, and real packets through interval sets with exceptions and
 * address . protocol . port concatenations.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chooseDataplane, probeNftables } from "../../src/dataplane/dataplaneChoice.js";
import { NftablesDataplane } from "../../src/dataplane/nftables.js";
import { describeDrift, parseNftTable } from "../../src/dataplane/nftPlan.js";
import { run } from "../../src/dataplane/exec.js";
import { nsExec } from "../../src/sandbox/netns.js";
import { packageRoot } from "../../src/sandbox/paths.js";
import type { IpsetSpec } from "../../src/render/ipsetSpec.js";
import { type NftTable, nftSet, nftTable } from "../../src/render/nftFormat.js";
import type { Ruleset } from "../../src/render/ruleset.js";
import { ACCEPT, DROP, RETURN, dst, inSet, jump, protocol, rule, src } from "../../src/render/rules.js";
import { captureLog } from "../helpers/log.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";
import { POL, POL_NAMED, TW, allow, block, named, peers, ruleset, tcpPorts } from "../helpers/policyRulesetFixture.js";

const prefix = uniquePrefix("nftdp");
const sets = [peers, block, named];

/** The nat table as the agent renders it: masquerade in POSTROUTING. */
const nat: Ruleset = {
  family: 4,
  tables: [{ table: "nat", chains: [{ name: "SLUICE-POSTROUTING", rules: [rule(RETURN, src("10.244.1.0/24"), dst("10.244.0.0/16")), rule({ kind: "masquerade", randomFully: true }, src("10.244.0.0/16"), dst("224.0.0.0/4", true))] }], hooks: [{ builtin: "POSTROUTING", target: "SLUICE-POSTROUTING" }] }],
};

describe("nftables goldens (test/golden/policy/*.nft) are what the kernel takes", () => {
  const ns = `${prefix}-g`;
  before(async () => void (await makeNetns(ns)));
  after(async () => removeNetnsWithPrefix(ns));
  const dir = join(packageRoot(), "test", "golden", "policy");
  const goldens = readdirSync(dir).filter((f) => f.endsWith(".nft"));
  test(`every one of the ${goldens.length} goldens loads whole into a fresh namespace, and lists back with every rule`, async () => {
    assert.ok(goldens.length >= 20);
    for (const g of goldens) {
      const text = readFileSync(join(dir, g), "utf8");
      const family = /^add table ip6 /m.test(text) ? "ip6" : "ip";
      await nsExec(ns, "nft", ["-f", join(dir, g)]);
      const listed = await nsExec(ns, "nft", ["list", "table", family, "sluice"]);
      assert.equal((listed.match(/comment "sluice:/g) ?? []).length, (text.match(/^add rule /gm) ?? []).length, g);
      await nsExec(ns, "nft", ["delete", "table", family, "sluice"]);
    }
  });
});

describe("the agent's nfnetlink reader, inside a namespace", () => {
  const ns = `${prefix}-nl`;
  before(async () => void (await makeNetns(ns)));
  after(async () => removeNetnsWithPrefix(ns));
  const helper = join(packageRoot(), "build", "test", "helpers", "nftInNamespace.js");
  const inNs = async (...args: string[]): Promise<string> => nsExec(ns, process.execPath, [helper, ...args]);
  const norm = (t: NftTable): string => JSON.stringify({ c: t.chains.map((c) => [c.name, c.table ?? null, c.base ?? null, c.rules.map((r) => r.hash)]).sort(), s: t.sets.map((x) => [x.name, x.type, x.interval, [...x.elements].sort()]) });

  test("decodes every golden table exactly as `nft -j list table` shows it (chains, owners, hooks, comments, set types and elements)", async () => {
    const dir = join(packageRoot(), "test", "golden", "policy");
    let compared = 0;
    for (const g of readdirSync(dir).filter((f) => f.endsWith(".nft"))) {
      const text = readFileSync(join(dir, g), "utf8");
      const family = /^add table ip6 /m.test(text) ? 6 : 4;
      const fam = family === 6 ? "ip6" : "ip";
      // With the base chains the agent adds, so that chain owners are exercised too.
      await nsExec(ns, "nft", ["-f", "-"], `${text}add chain ${fam} sluice filter-forward { type filter hook forward priority 0; policy accept; }\nadd rule ${fam} sluice filter-forward jump SLUICE-FORWARD comment "sluice:0123456789abcdef"\n`);
      const viaNft = parseNftTable(await nsExec(ns, "nft", ["-j", "list", "table", fam, "sluice"]), family);
      const viaNetlink = (JSON.parse(await inNs("dump", String(family))) as { table: NftTable }).table;
      assert.equal(norm(viaNetlink), norm(viaNft), g);
      await nsExec(ns, "nft", ["delete", "table", fam, "sluice"]);
      compared++;
    }
    assert.ok(compared >= 20);
    assert.equal((JSON.parse(await inNs("dump", "4")) as { table: null }).table, null, "no table: undefined, not an error");
  });

  test("a resync with nothing committed since our write reads nothing; someone else's commit makes it read and repair", async () => {
    const steps = JSON.parse(await inNs("resync")) as Array<{ wrote: boolean; reads: number; writes: number; unchanged: number }>;
    assert.deepEqual(steps.map((s) => s.wrote), [true, false, false, true, false]);
    assert.deepEqual(steps.map((s) => s.unchanged), [0, 1, 2, 2, 3], "the generation answered the resyncs before and after the foreign commit");
    assert.deepEqual(steps.map((s) => s.reads), [1, 1, 1, 2, 2], "the first apply and the one after the foreign commit read the table; the others did not");
  });
});

describe("--dataplane auto follows the node", () => {
  const ns = `${prefix}-c`;
  before(async () => void (await makeNetns(ns)));
  after(async () => removeNetnsWithPrefix(ns));

  test("iptables unless EnableNFTables or kube-proxy's nftables table has chains; explicit settings win; no nft binary: iptables, or a clear error when nftables was asked for", async () => {
    const here = { netns: ns };
    assert.deepEqual(await chooseDataplane("auto", false, here), { kind: "iptables", reason: "--dataplane auto: kube-proxy is not in nftables mode and EnableNFTables is not set" });
    assert.equal((await chooseDataplane("auto", true, here)).kind, "nftables");
    await nsExec(ns, "nft", ["add", "table", "ip", "kube-proxy"]);
    assert.equal((await chooseDataplane("auto", false, here)).kind, "iptables", "an empty kube-proxy table is not kube-proxy running");
    await nsExec(ns, "nft", ["add", "chain", "ip", "kube-proxy", "services"]);
    assert.deepEqual(await chooseDataplane("auto", false, here), { kind: "nftables", reason: "--dataplane auto: kube-proxy runs in nftables mode (its kube-proxy table has chains)" });
    assert.equal((await chooseDataplane("iptables", true, here)).kind, "iptables");
    const none = { netns: ns, nft: "/nonexistent/nft" };
    assert.deepEqual(await chooseDataplane("auto", true, none), { kind: "iptables", reason: "--dataplane auto: no nft binary here" });
    await assert.rejects(chooseDataplane("nftables", false, none), /--dataplane nftables: the nft binary cannot run here.*apt-get install nftables/);
  });

  test("the probe checks what the table needs without leaving anything", async () => {
    const caps = await probeNftables({ netns: ns });
    assert.equal(typeof caps.sctpMatch, "boolean");
    assert.doesNotMatch(await nsExec(ns, "nft", ["list", "tables"]), /sluice-probe/);
  });
});

describe("nftables dataplane in a throwaway namespace", () => {
  const ns = `${prefix}-a`;
  let dp: NftablesDataplane;
  const nft = (...args: string[]): Promise<string> => nsExec(ns, "nft", args);
  /** Every rule's handle by chain, from `nft -a list table`: a rewritten chain gets new handles, an untouched one keeps its own. */
  const handles = async (): Promise<Map<string, string[]>> => {
    const out = new Map<string, string[]>();
    let chain = "";
    for (const line of (await nft("-a", "list", "table", "ip", "sluice")).split("\n")) {
      const c = /^\s*chain (\S+) \{/.exec(line);
      if (c) chain = c[1] as string;
      const h = /# handle (\d+)$/.exec(line);
      if (h && !/^\s*(chain|set|table) /.test(line)) out.set(chain, [...(out.get(chain) ?? []), h[1] as string]);
    }
    return out;
  };
  const elements = async (set: string): Promise<string[]> => {
    const doc = JSON.parse(await nft("-j", "list", "set", "ip", "sluice", set)) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
    return (doc.nftables.find((x) => x.set)?.set?.elem ?? []).map((e) => JSON.stringify(e));
  };

  before(async () => {
    await makeNetns(ns);
    dp = new NftablesDataplane({ family: 4, netns: ns, log: captureLog().log });
  });
  after(async () => removeNetnsWithPrefix(ns));

  test("first apply: one transaction; the table read back is exactly what was recorded (elements printed as the formatter writes them)", async () => {
    const r = await dp.apply(4, ruleset(), sets);
    assert.equal(r.plan.replaced, true);
    assert.equal(dp.writes, 1);
    const text = await nft("list", "table", "ip", "sluice");
    assert.match(text, /chain filter-forward \{\s*type filter hook forward priority filter; policy accept;\s*jump SLUICE-FORWARD/);
    assert.match(text, /ip daddr \. meta l4proto \. th dport @slc4-named/);
    // 10.0.0.0/8 with 10.1.0.0/16 carved out (10.9.9.9 lies inside what is left).
    assert.deepEqual(await elements("slc4-block"), [JSON.stringify({ prefix: { addr: "10.0.0.0", len: 16 } }), JSON.stringify({ range: ["10.2.0.0", "10.255.255.255"] })]);
    const kernel = await dp.read();
    assert.ok(kernel);
    assert.equal(describeDrift(nftTable(ruleset(), sets.map(nftSet)), kernel), "");
  });

  test("a no-op re-apply writes nothing, trusting the record or reading the kernel", async () => {
    const writes = dp.writes;
    const reads = dp.reads;
    assert.equal((await dp.apply(4, ruleset(), sets, { trustCache: true })).wrote, false);
    assert.equal(dp.reads, reads, "trusting the record reads nothing");
    assert.equal((await dp.apply(4, ruleset(), sets)).wrote, false);
    assert.equal(dp.reads, reads + 1);
    assert.equal(dp.writes, writes);
  });

  test("one chain changed: only it is rewritten; every other chain keeps its rule handles (and counters)", async () => {
    const before = await handles();
    const policy = [allow(inSet("slc4-peers", ["src"])), allow(...tcpPorts(80, 443), inSet("slc4-block", ["src"]))];
    const r = await dp.apply(4, ruleset({ policy }), sets, { trustCache: true });
    assert.deepEqual(r.plan.chainsRewritten, [POL]);
    assert.deepEqual([r.plan.setsUpdated, r.plan.chainsAdded, r.plan.chainsRemoved], [[], [], []]);
    const after = await handles();
    for (const [chain, hs] of before) if (chain !== POL) assert.deepEqual(after.get(chain), hs, chain);
    assert.notDeepEqual(after.get(POL), before.get(POL));
    assert.match(await nft("list", "chain", "ip", "sluice", POL), /tcp dport 80-443/);
    await dp.apply(4, ruleset(), sets, { trustCache: true });
  });

  test("set members changed: element adds and deletes only; no chain touched", async () => {
    const before = await handles();
    const next = { ...peers, members: ["10.244.1.5", "10.244.5.1"] };
    const r = await dp.apply(4, ruleset(), [next, block, named], { trustCache: true });
    assert.deepEqual(r.plan.setsUpdated, ["slc4-peers"]);
    assert.deepEqual(r.plan.chainsRewritten, []);
    assert.deepEqual(await handles(), before);
    assert.deepEqual(await elements("slc4-peers"), ['"10.244.1.5"', '"10.244.5.1"']);
    // An exception added to a net set: its intervals change shape.
    const carved = { ...block, members: [...block.members, "10.200.0.0/16 nomatch"] };
    await dp.apply(4, ruleset(), [peers, carved, named], { trustCache: true });
    assert.equal((await elements("slc4-block")).length, 3);
    assert.equal(describeDrift(nftTable(ruleset(), [peers, carved, named].map(nftSet)), (await dp.read()) ?? { family: 4, chains: [], sets: [] }), "");
    await dp.apply(4, ruleset(), sets, { trustCache: true });
  });

  test("drift (a deleted rule, a deleted element, a foreign chain in our table) is logged and repaired by the next read", async () => {
    const log = captureLog();
    const d = new NftablesDataplane({ family: 4, netns: ns, log: log.log });
    await d.apply(4, ruleset(), sets);
    const handle = (await handles()).get(TW)?.[0] as string;
    await nft("delete", "rule", "ip", "sluice", TW, "handle", handle);
    await nft("delete", "element", "ip", "sluice", "slc4-peers", "{ 10.244.2.7 }");
    await nft("add", "chain", "ip", "sluice", "someone-elses");
    assert.equal((await d.apply(4, ruleset(), sets, { trustCache: true })).wrote, false, "trusting the record, a change-free apply does not notice");
    const r = await d.apply(4, ruleset(), sets);
    assert.deepEqual(r.plan.chainsRewritten, [TW]);
    assert.deepEqual(r.plan.setsUpdated, ["slc4-peers"]);
    assert.deepEqual(r.plan.chainsRemoved, ["someone-elses"]);
    const drift = log.records.find((x) => x["msg"] === "nftables table drifted from what was written; repairing");
    assert.match(String(drift?.["drift"]), /chains edited: slc-tw-.*chains not ours: someone-elses; set elements changed: slc4-peers/);
    assert.equal((await d.apply(4, ruleset(), sets)).wrote, false, "and then stays put");
  });

  test("a restart that writes nat first keeps the policy chains and sets its previous run left; the filter apply then writes nothing", async () => {
    const restarted = new NftablesDataplane({ family: 4, netns: ns, log: captureLog().log });
    const before = await handles();
    await restarted.applyTables(nat);
    const after = await handles();
    for (const [chain, hs] of before) assert.deepEqual(after.get(chain), hs, `${chain} untouched by the nat apply`);
    assert.ok(after.has("nat-postrouting") && after.has("SLUICE-POSTROUTING"));
    assert.match(await nft("list", "chain", "ip", "sluice", "SLUICE-POSTROUTING"), /masquerade fully-random/);
    const writes = restarted.writes;
    assert.equal((await restarted.apply(4, ruleset(), sets)).wrote, false, "the same policy as before the restart: nothing to write");
    assert.equal(restarted.writes, writes);
    assert.equal((await restarted.applyTables(nat, { trustCache: true }), restarted.writes), writes);
    // A filter apply on the old instance (which never saw nat) must not remove nat either: it reads.
    assert.equal((await dp.apply(4, ruleset(), sets)).wrote, false);
    assert.ok((await handles()).has("nat-postrouting"));
  });

  test("a chain removed with the only set it used: both go in the same transaction", async () => {
    const r = await dp.apply(4, ruleset({ named: false }), [peers, block]);
    assert.deepEqual(r.plan.chainsRemoved, [POL_NAMED]);
    assert.deepEqual(r.plan.setsRemoved, ["slc4-named"]);
    assert.doesNotMatch(await nft("list", "table", "ip", "sluice"), /slc4-named/);
    await dp.apply(4, ruleset(), sets);
  });

  test("refused before anything is written: rules naming undesired sets, the wrong family", async () => {
    const writes = dp.writes;
    await assert.rejects(dp.apply(4, ruleset(), [peers, block]), /not desired: slc4-named/);
    await assert.rejects(dp.apply(6, ruleset(), sets), /IPv4 nftables dataplane/);
    assert.equal(dp.writes, writes);
  });

  test("real packets: interval sets with exceptions, address . protocol . port sets; a set nft cannot hold fails closed for its rules only", async () => {
    const pk = `${prefix}-pk`;
    await makeNetns(pk);
    const d = new NftablesDataplane({ family: 4, netns: pk, log: captureLog().log });
    const lo: IpsetSpec = { name: "slc4-lo", type: "hash:net", family: 4, members: ["127.0.0.0/8", "127.0.5.0/24 nomatch", "127.0.5.7/32"] };
    const port: IpsetSpec = { name: "slc4-loport", type: "hash:ip,port", family: 4, members: ["127.0.0.1,udp:5353"] };
    const deny = (members: string[]): IpsetSpec => ({ name: "slc4-deny", type: "hash:ip", family: 4, members });
    const spec: Ruleset = {
      family: 4,
      tables: [
        {
          table: "filter",
          chains: [
            {
              name: "SLUICE-OUTPUT",
              rules: [
                rule(jump("slc-b"), dst("127.0.2.0/24")),
                // ICMP type 8: echo request.
                rule(DROP, protocol("icmp"), { kind: "icmp", family: 4, type: 8 }, inSet("slc4-lo", ["dst"])),
                rule(DROP, protocol("udp"), inSet("slc4-loport", ["dst", "dst"])),
              ],
            },
            { name: "slc-b", rules: [rule(DROP, inSet("slc4-deny", ["dst"])), rule(ACCEPT)] },
          ],
          hooks: [{ builtin: "OUTPUT", target: "SLUICE-OUTPUT" }],
        },
      ],
    };
    await d.apply(4, spec, [lo, port, deny(["127.0.2.1"])]);
    const reaches = async (to: string): Promise<boolean> => (await run("ip", ["netns", "exec", pk, "ping", "-c", "1", "-W", "1", to])).code === 0;
    assert.deepEqual(await Promise.all(["127.0.2.1", "127.0.2.2"].map(reaches)), [false, true], "the deny set drops its address only");
    assert.deepEqual(
      await Promise.all(["127.0.4.255", "127.0.5.0", "127.0.5.6", "127.0.5.7", "127.0.5.200", "127.0.6.0"].map(reaches)),
      [false, true, true, false, true, false],
      "the interval set matches 127/8 except 127.0.5.0/24, except 127.0.5.7 again (longest prefix decides)",
    );
    // Datagrams to 5353 and 5354: only the (address, udp, 5353) element drops.
    const udp =
      "const d=require('dgram');const got=[];for(const p of [5353,5354]){const s=d.createSocket('udp4');s.bind(p,'127.0.0.1',()=>{});s.on('message',()=>got.push(p))}" +
      "const c=d.createSocket('udp4');setTimeout(()=>c.send('x',5353,'127.0.0.1',()=>c.send('x',5354,'127.0.0.1')),100);setTimeout(()=>{console.log(JSON.stringify(got.sort()));process.exit(0)},600)";
    assert.equal((await nsExec(pk, process.execPath, ["-e", udp])).trim(), "[5354]");

    // A member no nft set can hold: its rules drop, the rest of the same apply lands.
    const r = await d.apply(4, spec, [{ ...lo, members: ["127.0.0.0/8"] }, port, deny(["127.0.2.1", "not-an-address"])]);
    assert.deepEqual(r.refusedSets.map((x) => x.name), ["slc4-deny"]);
    assert.match(r.refusedSets[0]?.reason ?? "", /slc4-deny: .*not-an-address/);
    assert.deepEqual(await Promise.all(["127.0.2.1", "127.0.2.2"].map(reaches)), [false, false], "the rule naming the refused set is DROP, at its position: all of 127.0.2.0/24 drops");
    assert.equal(await reaches("127.0.5.1"), false, "the other set was written in the same transaction");
    await removeNetnsWithPrefix(pk);
  });

  test("IPv6: its own ip6 table; ranges, prefixes and concatenations read back exactly as written", async () => {
    const d6 = new NftablesDataplane({ family: 6, netns: ns, log: captureLog().log });
    const v6sets: IpsetSpec[] = [
      { name: "slc6-net", type: "hash:net", family: 6, members: ["fd00:244::/48", "fd00:244:1::/64 nomatch", "fd00:244:1::5/128", "2001:db8:0:1::/64"] },
      { name: "slc6-pods", type: "hash:ip", family: 6, members: ["fd00:244:2::4", "fd00:244:2:0:1::9"] },
      { name: "slc6-port", type: "hash:ip,port", family: 6, members: ["fd00:244:2::4,tcp:8080", "fd00:244:2::4,sctp:9"] },
    ];
    const v6: Ruleset = {
      family: 6,
      tables: [{ table: "filter", chains: [{ name: "SLUICE-FORWARD", rules: [rule(DROP, inSet("slc6-net", ["src"]), inSet("slc6-port", ["dst", "dst"])), rule(ACCEPT, inSet("slc6-pods", ["dst"]), protocol("ipv6-icmp"), { kind: "icmp", family: 6, type: 128 })] }], hooks: [{ builtin: "FORWARD", target: "SLUICE-FORWARD" }] }],
    };
    await d6.apply(6, v6, v6sets);
    assert.match(await nft("list", "table", "ip6", "sluice"), /ip6 saddr @slc6-net ip6 daddr \. meta l4proto \. th dport @slc6-port drop/);
    assert.equal(describeDrift(nftTable(v6, v6sets.map(nftSet)), (await d6.read()) ?? { family: 6, chains: [], sets: [] }), "");
    assert.equal((await d6.apply(6, v6, v6sets)).wrote, false);
    await d6.removeAll();
  });

  test("removeAll: the nat chains alone, then everything (the table is gone)", async () => {
    await dp.removeAll(["nat"]);
    const left = await handles();
    assert.ok(!left.has("nat-postrouting") && !left.has("SLUICE-POSTROUTING") && left.has("filter-forward"));
    await dp.removeAll();
    const r = await run("ip", ["netns", "exec", ns, "nft", "list", "table", "ip", "sluice"]);
    assert.notEqual(r.code, 0);
    await dp.removeAll();
  });
});
