/**
 * Run inside a network namespace (`ip netns exec <ns> node build/test/helpers/nftInNamespace.js ...`):
 * what the agent does there, where netlink sockets see that namespace's nf_tables.
 *
 *   dump <4|6>        prints our table as the nfnetlink reader decodes it, and the generation
 *   resync            applies the fixture ruleset, resyncs twice, commits a foreign change,
 *                     resyncs again; prints what the driver counted at each step
 */
import { execFileSync } from "node:child_process";
import { pino } from "pino";
import { NftNetlink } from "../../src/dataplane/nftNetlink.js";
import { NftablesDataplane } from "../../src/dataplane/nftables.js";
import { block, named, peers, ruleset } from "./policyRulesetFixture.js";

async function main(): Promise<void> {
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === "dump") {
    const nl = new NftNetlink();
    const family = arg === "6" ? 6 : 4;
    const table = await nl.readTable(family, "sluice");
    const generation = await nl.generation();
    nl.close();
    process.stdout.write(JSON.stringify({ table: table ?? null, generation }));
    return;
  }
  if (cmd === "resync") {
    const dp = new NftablesDataplane({ family: 4, log: pino({ level: "silent" }) });
    const sets = [peers, block, named];
    const step = (wrote: boolean): { wrote: boolean; reads: number; writes: number; unchanged: number } => ({ wrote, reads: dp.reads, writes: dp.writes, unchanged: dp.unchangedChecks });
    const out = [];
    out.push(step((await dp.apply(4, ruleset(), sets)).wrote));
    out.push(step((await dp.apply(4, ruleset(), sets)).wrote)); // a resync: nothing committed since
    out.push(step((await dp.apply(4, ruleset(), sets)).wrote));
    execFileSync("nft", ["delete", "element", "ip", "sluice", "slc4-peers", "{ 10.244.2.7 }"]); // someone else's transaction
    out.push(step((await dp.apply(4, ruleset(), sets)).wrote)); // reads, finds the drift, repairs
    out.push(step((await dp.apply(4, ruleset(), sets)).wrote));
    dp.close();
    process.stdout.write(JSON.stringify(out));
    return;
  }
  throw new Error(`unknown command ${cmd ?? ""}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
