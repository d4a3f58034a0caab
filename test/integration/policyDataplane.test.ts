/**
 * The policy applier against the real kernel, in a throwaway namespace per iptables
 * backend: ipsets and iptables reconciled together, minimal diffs, no-op re-applies that
 * write nothing, drift repair, coexistence with other tools, stale set removal, and real
 * packets through `-m set` (nomatch, dst,dst) and `-m sctp`.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PolicyDataplane } from "../../src/dataplane/policyDataplane.js";
import { binaries } from "../../src/dataplane/iptables.js";
import { PROBE_CHAIN, probeCapabilities, probeRule } from "../../src/dataplane/capabilities.js";
import { run } from "../../src/dataplane/exec.js";
import { nsExec } from "../../src/sandbox/netns.js";
import type { IpsetSpec } from "../../src/render/ipsetSpec.js";
import type { Ruleset } from "../../src/render/ruleset.js";
import { ACCEPT, DROP, RETURN, dst, inSet, jump, markIs, protocol, rule, src } from "../../src/render/rules.js";
import { captureLog } from "../helpers/log.js";
import { ACCEPT_MARK, FW, POL, POL_NAMED, TW, allow, block, named, peers, ruleset, tcpPorts } from "../helpers/policyRulesetFixture.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";

const prefix = uniquePrefix("pdp");

const rulesOf = (text: string, chain: string): string[] => text.split("\n").filter((l) => l.startsWith(`-A ${chain} `));
const stripHash = (l: string): string => l.replace(/ -m comment --comment "?sluice:[0-9a-f]{16}"?/, "");

for (const mode of ["nft", "legacy"] as const) {
  describe(`policy dataplane (${mode}) in a throwaway namespace`, () => {
    const ns = `${prefix}-${mode}`;
    let dp: PolicyDataplane;
    const ipt = (...args: string[]): Promise<string> => nsExec(ns, `iptables-${mode}`, args);
    const save = (): Promise<string> => nsExec(ns, `iptables-${mode}-save`, ["-t", "filter"]);
    const ipset = (...args: string[]): Promise<string> => nsExec(ns, "ipset", args);
    const members = async (name: string): Promise<string[]> =>
      (await ipset("list", "-o", "save", name))
        .split("\n")
        .filter((l) => l.startsWith("add "))
        .map((l) => l.split(" ").slice(2).join(" "))
        .sort();
    const setNames = async (): Promise<string[]> => (await ipset("list", "-n")).split("\n").filter(Boolean).sort();
    const sets = [peers, block, named];

    before(async () => {
      await makeNetns(ns);
      dp = new PolicyDataplane({ family: 4, mode, netns: ns, log: captureLog().log });
    });
    after(async () => removeNetnsWithPrefix(ns));

    test("capabilities: set match works; a missing match is refused; the probe leaves nothing behind", async () => {
      const bin = binaries(4, mode, ns);
      const caps = await probeCapabilities(bin, 4);
      assert.equal(caps.setMatch, true, caps.notes.join("; "));
      const ipvs = await probeRule(bin, "-m ipvs --vproto 6");
      assert.equal(ipvs.ok, false, "this kernel has no IPVS, so the ipvs match must be refused");
      assert.doesNotMatch(await save(), new RegExp(PROBE_CHAIN), "the probe leaves no chain behind");
      assert.ok(!(await setNames()).some((n) => n.startsWith("slct-")), "nor a set");
    });

    test("SCTP: the probe's answer is whether the dataplane can load an SCTP rule, and a loaded one counts real SCTP packets by port", async (t) => {
      // A namespace of its own: the tests below expect the main one untouched.
      const sns = await makeNetns(`${ns}-sctp`);
      const caps = await probeCapabilities(binaries(4, mode, sns), 4);
      const sdp = new PolicyDataplane({ family: 4, mode, netns: sns, log: captureLog().log });
      const spec: Ruleset = {
        family: 4,
        tables: [{ table: "filter", chains: [{ name: "SLUICE-INPUT", rules: [rule(RETURN, protocol("sctp"), { kind: "ports", protocol: "sctp", dst: { from: 5000, to: 5000 } }), rule(RETURN, protocol("sctp"))] }], hooks: [{ builtin: "INPUT", target: "SLUICE-INPUT" }] }],
      };
      if (!caps.sctpMatch) {
        // What the renderer's sctpSupported guards against: one SCTP rule would stop the whole restore.
        await assert.rejects(sdp.apply(4, spec, []), Error, "the probe said no, so the dataplane must refuse the rule");
        t.skip(`iptables-${mode} here cannot match SCTP (${caps.notes.join("; ")}); the real-packet check runs in the vm suite, whose kernel has SCTP`);
        return;
      }
      await sdp.apply(4, spec, []);
      const py = await run("python3", ["--version"]).catch(() => undefined);
      assert.equal(py?.code, 0, "python3 sends the raw SCTP packets (scripts/setup.sh installs it)");
      // From a raw socket (IP protocol 132), since the kernel may have no SCTP sockets: the common header and one INIT chunk header.
      await nsExec(sns, "python3", [
        "-c",
        "import socket,struct\ns=socket.socket(socket.AF_INET,socket.SOCK_RAW,132)\nfor p in (5000,5001): s.sendto(struct.pack('!HHIIBBH',1234,p,0,0,1,0,4),('127.0.0.1',0))",
      ]);
      const counted = (await nsExec(sns, `iptables-${mode}-save`, ["-c", "-t", "filter"])).split("\n").filter((l) => /^\[\d+:\d+\] -A SLUICE-INPUT /.test(l));
      assert.equal(counted.length, 2, counted.join("\n"));
      assert.match(counted[0] ?? "", /^\[1:.*--dport 5000/, "the port match took exactly the packet to 5000");
      assert.match(counted[1] ?? "", /^\[1:/, "the packet to 5001 went past it: both packets arrived as SCTP");
    });

    test("first apply: sets first, then chains, our jumps first in INPUT/FORWARD/OUTPUT", async () => {
      const r = await dp.apply(4, ruleset(), sets);
      assert.deepEqual(r.prepare.plan.created, ["slc4-block", "slc4-named", "slc4-peers"]);
      assert.equal(r.iptables[0]?.plan.rewritten.length, 9);
      assert.deepEqual(r.iptables[0]?.plan.hooksFixed, ["FORWARD", "INPUT", "OUTPUT"]);
      const text = await save();
      for (const [b, t] of [["FORWARD", "SLUICE-FORWARD"], ["INPUT", "SLUICE-INPUT"], ["OUTPUT", "SLUICE-OUTPUT"]] as const) assert.match(rulesOf(text, b)[0] ?? "", new RegExp(`-j ${t}$`));
      assert.deepEqual(rulesOf(text, POL_NAMED).map(stripHash), [`-A ${POL_NAMED} -m set --match-set slc4-peers src -m set --match-set slc4-named dst,dst ${ACCEPT_MARK}`]);
      assert.deepEqual(await members("slc4-block"), ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.9.9.9"]);
      assert.deepEqual(await members("slc4-named"), ["10.244.3.4,tcp:8080", "10.244.3.4,udp:53"]);
    });

    test("a no-op re-apply writes nothing at all", async () => {
      const writes = [dp.iptables.writes, dp.ipsets.writes];
      const r = await dp.apply(4, ruleset(), sets);
      await dp.apply(4, ruleset(), sets);
      assert.equal(r.wrote, false);
      assert.deepEqual([dp.iptables.writes, dp.ipsets.writes], writes);
    });

    test("changing one chain rewrites only that chain; sets untouched", async () => {
      const ipsetWrites = dp.ipsets.writes;
      const policy = [allow(inSet("slc4-peers", ["src"])), allow(...tcpPorts(80, 443), inSet("slc4-block", ["src"]))];
      const r = await dp.apply(4, ruleset({ policy }), sets);
      assert.deepEqual(r.iptables[0]?.plan.rewritten, [POL]);
      assert.deepEqual(r.iptables[0]?.plan.hooksFixed, []);
      assert.equal(dp.ipsets.writes, ipsetWrites);
      assert.match(rulesOf(await save(), POL)[1] ?? "", /--dport 80:443/);
      await dp.apply(4, ruleset(), sets);
    });

    test("changing set members swaps the set; chains untouched", async () => {
      const iptWrites = dp.iptables.writes;
      const next = { ...peers, members: ["10.244.5.1", "10.244.5.2", "10.244.5.3"] };
      const r = await dp.apply(4, ruleset(), [next, block, named]);
      assert.deepEqual(r.prepare.plan.swapped, ["slc4-peers"]);
      assert.equal(dp.iptables.writes, iptWrites);
      assert.deepEqual(await members("slc4-peers"), next.members);
      assert.match(await ipset("list", "-t", "slc4-peers"), /References: 2/, "both rules still use the live set");
      assert.ok(!(await setNames()).some((n) => n.startsWith("slct-")));
      await dp.apply(4, ruleset(), sets);
    });

    test("overlapping applies run one after the other; the last one wins", async () => {
      const next = { ...peers, members: ["10.244.8.8"] };
      const [a, b] = await Promise.all([dp.apply(4, ruleset(), [next, block, named]), dp.apply(4, ruleset(), sets)]);
      assert.deepEqual(a.prepare.plan.swapped, ["slc4-peers"]);
      assert.deepEqual(b.prepare.plan.swapped, ["slc4-peers"]);
      assert.deepEqual(await members("slc4-peers"), peers.members);
    });

    test("drift: a deleted rule, an edited rule, a deleted hook; each repaired exactly", async () => {
      const ipsetWrites = dp.ipsets.writes;
      await ipt("-D", POL, "1");
      let r = await dp.apply(4, ruleset(), sets);
      assert.deepEqual(r.iptables[0]?.plan.rewritten, [POL]);
      await ipt("-R", FW, "1", "-j", "DROP");
      r = await dp.apply(4, ruleset(), sets);
      assert.deepEqual(r.iptables[0]?.plan.rewritten, [FW]);
      assert.deepEqual(rulesOf(await save(), FW).map(stripHash), [`-A ${FW} -j RETURN`]);
      await ipt("-D", "FORWARD", "1");
      r = await dp.apply(4, ruleset(), sets);
      assert.deepEqual(r.iptables[0]?.plan.rewritten, []);
      assert.deepEqual(r.iptables[0]?.plan.hooksFixed, ["FORWARD"]);
      assert.match(rulesOf(await save(), "FORWARD")[0] ?? "", /-j SLUICE-FORWARD$/);
      assert.equal(dp.ipsets.writes, ipsetWrites);
    });

    test("drift: a flushed set, an added member, a destroyed set (after someone emptied the chain using it)", async () => {
      const iptBefore = dp.iptables.writes;
      await ipset("flush", "slc4-block");
      await ipset("add", "slc4-peers", "10.66.66.66");
      let r = await dp.apply(4, ruleset(), sets);
      assert.deepEqual(r.prepare.plan.swapped, ["slc4-block"]);
      assert.deepEqual(r.prepare.plan.updated, ["slc4-peers"]);
      assert.equal(dp.iptables.writes, iptBefore, "chains untouched");
      assert.deepEqual(await members("slc4-block"), ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.9.9.9"]);
      assert.ok(!(await members("slc4-peers")).includes("10.66.66.66"));

      await ipt("-F", POL_NAMED);
      await ipset("destroy", "slc4-named");
      r = await dp.apply(4, ruleset(), sets);
      assert.deepEqual(r.prepare.plan.created, ["slc4-named"]);
      assert.deepEqual(r.iptables[0]?.plan.rewritten, [POL_NAMED]);
      assert.equal((await dp.apply(4, ruleset(), sets)).wrote, false);
    });

    test("coexistence: foreign rules before and after ours, a foreign chain and a foreign set", async () => {
      await ipset("create", "KUBE-FOREIGN", "hash:ip");
      await ipset("add", "KUBE-FOREIGN", "192.0.2.9");
      await ipt("-N", "FOREIGN-IN");
      await ipt("-A", "FOREIGN-IN", "-m", "set", "--match-set", "KUBE-FOREIGN", "src", "-j", "RETURN");
      await ipt("-I", "FORWARD", "1", "-s", "192.0.2.0/24", "-j", "ACCEPT");
      await ipt("-I", "INPUT", "1", "-j", "FOREIGN-IN");
      await ipt("-A", "OUTPUT", "-d", "198.51.100.1", "-j", "DROP");
      const foreignBefore = rulesOf(await save(), "FOREIGN-IN");
      const setWrites = dp.ipsets.writes;
      const r = await dp.apply(4, ruleset(), sets);
      assert.deepEqual(r.iptables[0]?.plan.hooksFixed, ["FORWARD", "INPUT"]);
      assert.deepEqual(r.iptables[0]?.plan.rewritten, []);
      assert.equal(dp.ipsets.writes, setWrites);
      const text = await save();
      assert.deepEqual(rulesOf(text, "FORWARD").map(stripHash), ["-A FORWARD -j SLUICE-FORWARD", "-A FORWARD -s 192.0.2.0/24 -j ACCEPT"]);
      assert.deepEqual(rulesOf(text, "INPUT").map(stripHash), ["-A INPUT -j SLUICE-INPUT", "-A INPUT -j FOREIGN-IN"]);
      assert.deepEqual(rulesOf(text, "OUTPUT").map(stripHash), ["-A OUTPUT -j SLUICE-OUTPUT", "-A OUTPUT -d 198.51.100.1/32 -j DROP"]);
      assert.deepEqual(rulesOf(text, "FOREIGN-IN"), foreignBefore);
      assert.deepEqual(await members("KUBE-FOREIGN"), ["192.0.2.9"]);
      assert.equal((await dp.apply(4, ruleset(), sets)).wrote, false, "and then stays put");
    });

    test("a set only a removed chain used is destroyed in the same apply, after the chain", async () => {
      const r = await dp.apply(4, ruleset({ named: false }), [peers, block]);
      assert.deepEqual(r.iptables[0]?.plan.removed, [POL_NAMED]);
      assert.deepEqual(r.iptables[0]?.plan.rewritten, [TW]);
      assert.deepEqual(r.removeStale.plan.destroyed, ["slc4-named"]);
      assert.deepEqual(r.removeStale.plan.inUse, []);
      assert.deepEqual(await setNames(), ["KUBE-FOREIGN", "slc4-block", "slc4-peers"]);
      await dp.apply(4, ruleset(), sets);
    });

    test("rules naming a set that is not desired are refused before anything is written", async () => {
      const writes = dp.writes;
      await assert.rejects(dp.apply(4, ruleset(), [peers, block]), /not desired: slc4-named/);
      await assert.rejects(dp.apply(6, ruleset(), sets), /IPv4 policy dataplane/);
      assert.equal(dp.writes, writes);
    });

    test("a set of ours replaced under a live rule by one of another type: fail closed, recreate, restore", async () => {
      const asNet: IpsetSpec = { ...peers, type: "hash:net", members: ["10.244.1.0/24", "10.244.1.5 nomatch"] };
      const r = await dp.apply(4, ruleset(), [asNet, block, named]);
      assert.deepEqual(r.failClosedFor, ["slc4-peers"]);
      assert.deepEqual(r.prepare.plan.recreated, ["slc4-peers"]);
      assert.match(await ipset("list", "-t", "slc4-peers"), /Type: hash:net[\s\S]*References: 2/);
      assert.match(rulesOf(await save(), POL)[0] ?? "", /--match-set slc4-peers src/);
      assert.equal((await dp.apply(4, ruleset(), [asNet, block, named])).wrote, false);
      await dp.apply(4, ruleset(), [{ ...peers, name: "slc4-peers" }, block, named]);
    });

    test("real packets: hash:net nomatch exceptions and hash:ip,port dst,dst", async () => {
      const lo: IpsetSpec = { name: "slc4-lo", type: "hash:net", family: 4, members: ["127.0.0.0/8", "127.0.5.0/24 nomatch"] };
      const port: IpsetSpec = { name: "slc4-loport", type: "hash:ip,port", family: 4, members: ["127.0.0.1,udp:5353"] };
      const spec: Ruleset = {
        family: 4,
        tables: [
          {
            table: "filter",
            chains: [
              // ICMP type 8: echo request.
              { name: "SLUICE-OUTPUT", rules: [rule(RETURN, protocol("icmp"), { kind: "icmp", family: 4, type: 8 }, inSet("slc4-lo", ["dst"])), rule(RETURN, protocol("udp"), inSet("slc4-loport", ["dst", "dst"]))] },
            ],
            hooks: [{ builtin: "OUTPUT", target: "SLUICE-OUTPUT" }],
          },
        ],
      };
      const r = await dp.apply(4, spec, [lo, port]);
      assert.deepEqual(r.removeStale.plan.destroyed, ["slc4-block", "slc4-named", "slc4-peers"]);
      for (const dst of ["127.0.5.1", "127.0.6.1", "127.0.5.200"]) await nsExec(ns, "ping", ["-c", "1", "-W", "1", dst]);
      const send = "const s=require('dgram').createSocket('udp4');s.send('x',5353,'127.0.0.1',()=>s.send('x',5354,'127.0.0.1',()=>s.close()))";
      await nsExec(ns, process.execPath, ["-e", send]);
      const counters = (await nsExec(ns, `iptables-${mode}-save`, ["-c", "-t", "filter"])).split("\n").filter((l) => l.includes("-A SLUICE-OUTPUT"));
      assert.match(counters[0] ?? "", /^\[1:/, "one echo request matched: 127.0.6.1; the two in the nomatch /24 did not");
      assert.match(counters[1] ?? "", /^\[1:/, "one datagram matched: to port 5353, not 5354");
    });

    test("a set the kernel refuses (an unspecified address reaching the applier) fails closed for its rules only; the rest applies", async () => {
      // Each range of loopback addresses has its own chain: a allows its set, b denies its set, c uses no set.
      const good = (members: string[]): IpsetSpec => ({ name: "slc4-good", type: "hash:ip", family: 4, members });
      const deny = (members: string[]): IpsetSpec => ({ name: "slc4-deny", type: "hash:ip", family: 4, members });
      const spec: Ruleset = {
        family: 4,
        tables: [
          {
            table: "filter",
            chains: [
              { name: "SLUICE-OUTPUT", rules: [rule(jump("slc-a"), dst("127.0.1.0/24")), rule(jump("slc-b"), dst("127.0.2.0/24")), rule(jump("slc-c"), dst("127.0.3.0/24"))] },
              { name: "slc-a", rules: [rule(ACCEPT, inSet("slc4-good", ["dst"])), rule(DROP)] },
              { name: "slc-b", rules: [rule(DROP, inSet("slc4-deny", ["dst"])), rule(ACCEPT)] },
              { name: "slc-c", rules: [rule(ACCEPT, dst("127.0.3.1/32")), rule(DROP)] },
            ],
            hooks: [{ builtin: "OUTPUT", target: "SLUICE-OUTPUT" }],
          },
        ],
      };
      const reaches = async (dst: string): Promise<boolean> => (await run("ip", ["netns", "exec", ns, "ping", "-c", "1", "-W", "1", dst])).code === 0;
      await dp.apply(4, spec, [good(["127.0.1.1"]), deny(["127.0.2.1"])]);
      assert.deepEqual(await Promise.all(["127.0.1.1", "127.0.1.2", "127.0.2.1", "127.0.2.2", "127.0.3.1"].map(reaches)), [true, false, false, true, true], "before: a's set allows, b's set denies");

      // One apply: a's set grows, and b's deny set gets an address the kernel cannot store.
      const r = await dp.apply(4, spec, [good(["127.0.1.1", "127.0.1.2"]), deny(["0.0.0.0", "127.0.2.1"])]);
      assert.deepEqual(r.refusedSets.map((x) => x.name), ["slc4-deny"]);
      assert.match(r.refusedSets[0]?.reason ?? "", /"add slc4-deny 0\.0\.0\.0": Null-valued element/);
      const text = await save();
      assert.deepEqual(rulesOf(text, "slc-b").map(stripHash), ["-A slc-b -j DROP", "-A slc-b -j ACCEPT"], "the rule naming the refused set is DROP, at its position");
      assert.deepEqual(rulesOf(text, "slc-a").map(stripHash), ["-A slc-a -m set --match-set slc4-good dst -j ACCEPT", "-A slc-a -j DROP"], "the other chains are as desired");
      assert.deepEqual(await members("slc4-good"), ["127.0.1.1", "127.0.1.2"], "the other set was written in the same apply");
      assert.ok(!(await setNames()).includes("slc4-deny"), "nothing of the refused set is left for a rule to match");
      assert.deepEqual(await Promise.all(["127.0.1.1", "127.0.1.2", "127.0.2.1", "127.0.2.2", "127.0.3.1"].map(reaches)), [true, true, false, false, true], "the deny holds (more than it should, never less); everything else as desired");

      // Every later apply tries again; once the value is gone, b is back.
      assert.deepEqual((await dp.apply(4, spec, [good(["127.0.1.1", "127.0.1.2"]), deny(["0.0.0.0", "127.0.2.1"])])).refusedSets.map((x) => x.name), ["slc4-deny"]);
      const fixed = await dp.apply(4, spec, [good(["127.0.1.1", "127.0.1.2"]), deny(["127.0.2.1"])]);
      assert.deepEqual(fixed.refusedSets, []);
      assert.deepEqual(await Promise.all(["127.0.2.1", "127.0.2.2"].map(reaches)), [false, true]);
    });

    test("applyTables (the nat table's schedule): the chain as iptables-save prints it, a no-op writes nothing, the wrong family is refused", async () => {
      const nat: Ruleset = {
        family: 4,
        tables: [{ table: "nat", chains: [{ name: "SLUICE-POSTROUTING", rules: [rule(RETURN, markIs({ value: 0x4000, mask: 0x4000 })), rule({ kind: "masquerade" }, src("10.244.0.0/16"), dst("224.0.0.0/4", true))] }], hooks: [{ builtin: "POSTROUTING", target: "SLUICE-POSTROUTING" }] }],
      };
      await dp.applyTables(nat);
      const saved = (await nsExec(ns, `iptables-${mode}-save`, ["-t", "nat"])).split("\n").filter((l) => l.startsWith("-A SLUICE-POSTROUTING ")).map(stripHash);
      assert.deepEqual(saved, ["-A SLUICE-POSTROUTING -m mark --mark 0x4000/0x4000 -j RETURN", "-A SLUICE-POSTROUTING -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE"]);
      const writes = dp.writes;
      await dp.applyTables(nat);
      assert.equal(dp.writes, writes);
      await assert.rejects(dp.applyTables({ ...nat, family: 6 }), /IPv4 dataplane given an IPv6 ruleset/);
      await dp.applyTables({ family: 4, tables: [{ table: "nat", chains: [], hooks: [] }] });
      assert.doesNotMatch(await nsExec(ns, `iptables-${mode}-save`, ["-t", "nat"]), /SLUICE-/);
    });

    test("removeAll leaves only the foreign chain, rules and set", async () => {
      await dp.removeAll();
      const text = await save();
      assert.doesNotMatch(text, /SLUICE-|slc-/);
      assert.ok(rulesOf(text, "FORWARD").includes("-A FORWARD -s 192.0.2.0/24 -j ACCEPT"));
      assert.deepEqual(await setNames(), ["KUBE-FOREIGN"]);
    });
  });
}
