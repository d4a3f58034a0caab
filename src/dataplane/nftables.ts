/**
 * The native nftables RulesDataplane for one family: the same rulesets as the iptables +
 * ipset path, written as our own table (`ip sluice` / `ip6 sluice`, src/render/nftFormat.ts)
 * in one `nft -f` transaction per apply: sets, elements, chains and rules together, so
 * there is no order in which a rule names a missing set and nothing is ever half applied.
 *
 * Cached kernel state: the driver keeps the table it last wrote. A change between resyncs
 * (`trustCache`) plans against that record and writes only its delta (element adds and
 * deletes, changed chains flushed and refilled), reading nothing. Start-up, the resync
 * timer and any apply after a failure read the table back, log what drifted from the
 * record, and repair it in the same kind of transaction. In its own namespace (the agent)
 * the driver reads over nfnetlink (nftNetlink.ts) and first asks the kernel for the
 * ruleset generation: while it is the one our last write left, no transaction of anyone's
 * has committed since, and the record is the kernel without reading it. From outside a
 * namespace (tests) it reads with `nft -j list table`.
 *
 * One table holds what iptables keeps in four, and the agent applies them on separate
 * schedules (nat alone; raw + filter with the sets). An apply replaces only the tables it
 * is given: chains of a table not given yet in this run (reached from its base chains, as
 * read back) and, until the first full apply, the sets, are kept as the kernel holds them.
 * So a restarting agent that writes nat first never removes the policy its previous run
 * left in place.
 *
 * A set that cannot be written (a member no nft set can hold) is refused: the rules that
 * name it become DROP and everything else is applied, as on the iptables path.
 */
import type { Logger } from "pino";
import type { Family } from "../model/ip.js";
import type { IpsetSpec } from "../render/ipsetSpec.js";
import { type NftSet, type NftTable, NFT_TABLE, NftMemberError, nftFamily, nftSet, nftTable } from "../render/nftFormat.js";
import type { Ruleset, TableName, TableSpec } from "../render/ruleset.js";
import { run } from "./exec.js";
import type { KernelReadOptions } from "./iptables.js";
import { NftGenerations, NftNetlink } from "./nftNetlink.js";
import { type NftPlan, describeDrift, parseNftTable, planNft } from "./nftPlan.js";
import { checkRulesInput, failClosedRuleset } from "./policyDataplane.js";
import type { RulesApplyReport, RulesDataplane } from "./rulesDataplane.js";

export interface NftablesDataplaneOptions {
  family: Family;
  /** Run inside this network namespace (tests, sandbox). */
  netns?: string | undefined;
  log: Logger;
  /** Shared by the dataplanes of one agent (see NftGenerations); each has its own otherwise. */
  generations?: NftGenerations;
}

export interface NftApplyReport extends RulesApplyReport {
  plan: NftPlan;
}

const TABLE_ORDER: readonly TableName[] = ["raw", "mangle", "filter", "nat"];

/** nft's error output, trimmed to what names the problem (it echoes the whole offending line with carets). */
function nftError(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => /Error:/.test(l));
  return (lines.length ? lines.slice(0, 3).join("; ") : stderr.trim()).slice(0, 600);
}

export class NftablesDataplane implements RulesDataplane {
  readonly family: Family;
  writes = 0;
  reads = 0;
  private readonly netns: string | undefined;
  private readonly log: Logger;
  /** The table as this driver last left it; undefined: read the kernel before the next write. */
  private record: NftTable | undefined;
  /** The tables given so far in this run, by name (the last one given of each). */
  private readonly given = new Map<TableName, TableSpec>();
  /** The sets of the last full apply; undefined until one. */
  private sets: NftSet[] | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The nfnetlink reader (own namespace only), opened on first use. */
  private netlink: NftNetlink | undefined;
  /** The ruleset generation that matches the record: undefined when unknown (read before trusting). */
  private generation: number | undefined;
  /** Resyncs answered by the generation alone (nothing committed since our last write). */
  unchangedChecks = 0;
  private readonly generations: NftGenerations;

  constructor(opts: NftablesDataplaneOptions) {
    this.family = opts.family;
    this.netns = opts.netns;
    this.log = opts.log;
    this.generations = opts.generations ?? new NftGenerations();
  }

  private reader(): NftNetlink | undefined {
    if (this.netns !== undefined) return undefined;
    this.netlink ??= new NftNetlink();
    return this.netlink;
  }

  /** Closes the netlink socket (the agent's shutdown; a later read opens it again). */
  close(): void {
    this.netlink?.close();
    this.netlink = undefined;
  }

  private async currentGeneration(): Promise<number | undefined> {
    const nl = this.reader();
    if (!nl) return undefined;
    try {
      return await nl.generation();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, "nfnetlink generation unavailable; reading the table");
      return undefined;
    }
  }

  private get at(): string {
    return `${nftFamily(this.family)} ${NFT_TABLE}`;
  }

  private nft(args: string[], input?: string): Promise<{ stdout: string; stderr: string; code: number }> {
    return this.netns ? run("ip", ["netns", "exec", this.netns, "nft", ...args], input) : run("nft", args, input);
  }

  apply(family: Family, ruleset: Ruleset, ipsets: readonly IpsetSpec[], opts: KernelReadOptions = {}): Promise<NftApplyReport> {
    return this.serial(() => this.applyOnce(family, ruleset, ipsets, opts));
  }

  applyTables(ruleset: Ruleset, opts: KernelReadOptions = {}): Promise<void> {
    return this.serial(async () => {
      if (ruleset.family !== this.family) throw new Error(`IPv${this.family} dataplane given an IPv${ruleset.family} ruleset`);
      for (const t of ruleset.tables) this.given.set(t.table, t);
      await this.write(opts);
    });
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.queue.then(async () => {
      try {
        return await f();
      } catch (err) {
        this.record = undefined;
        this.generation = undefined;
        throw err;
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async applyOnce(family: Family, ruleset: Ruleset, ipsets: readonly IpsetSpec[], opts: KernelReadOptions): Promise<NftApplyReport> {
    const started = Date.now();
    checkRulesInput("nftables dataplane", this.family, family, ruleset, ipsets);
    const sets: NftSet[] = [];
    const refusedSets: Array<{ name: string; reason: string }> = [];
    for (const s of ipsets) {
      try {
        sets.push(nftSet(s));
      } catch (err) {
        if (!(err instanceof NftMemberError)) throw err;
        refusedSets.push({ name: s.name, reason: err.message });
      }
    }
    const refused = new Set(refusedSets.map((r) => r.name));
    if (refused.size) this.log.error({ family, sets: refusedSets }, "sets that cannot be written: the rules that use them drop their traffic (fail closed); everything else is applied");
    const effective = refused.size ? failClosedRuleset(ruleset, refused) : ruleset;
    for (const t of effective.tables) this.given.set(t.table, t);
    this.sets = sets;
    const before = this.writes;
    const readsBefore = this.reads;
    const plan = await this.write(opts);
    const report = { family, wrote: this.writes > before, failClosedFor: [], refusedSets, ms: Date.now() - started, plan };
    // The same records as the iptables path's, so that operators (and the benchmarks) read one vocabulary.
    const reads = this.reads - readsBefore;
    if (!report.wrote) this.log.debug({ family, ms: report.ms, reads }, "policy dataplane checked");
    else {
      this.log.debug(
        { family, ms: report.ms, reads, replaced: plan.replaced, setsCreated: plan.setsAdded.length, setsUpdated: plan.setsUpdated, setsDestroyed: plan.setsRemoved, chainsAdded: plan.chainsAdded.length, chainsRewritten: plan.chainsRewritten, chainsRemoved: plan.chainsRemoved },
        "policy dataplane applied",
      );
    }
    return report;
  }

  /** The desired table: what has been given, plus what the kernel (`current`) holds of what has not. */
  private desired(current: NftTable | undefined): NftTable {
    const tables = TABLE_ORDER.flatMap((t) => {
      const spec = this.given.get(t);
      return spec ? [spec] : [];
    });
    const fresh = nftTable({ family: this.family, tables }, this.sets ?? current?.sets ?? []);
    if (!current) return fresh;
    const kept = current.chains.filter((c) => c.table !== undefined && !this.given.has(c.table) && !fresh.chains.some((f) => f.name === c.name));
    return kept.length ? { ...fresh, chains: [...fresh.chains, ...kept] } : fresh;
  }

  private async write(opts: KernelReadOptions): Promise<NftPlan> {
    let trusted = opts.trustCache === true && this.record !== undefined;
    const genBefore = await this.currentGeneration();
    const since = this.generation;
    if (!trusted && this.record && genBefore !== undefined && since !== undefined && this.generations.onlyOursBetween(since, genBefore)) {
      trusted = true; // nothing anywhere has committed since the record was true
      this.unchangedChecks++;
    }
    const current = trusted ? this.record : await this.read();
    if (!trusted && this.record) {
      const drift = current ? describeDrift(this.record, current) : "table missing";
      if (drift) this.log.warn({ family: this.family, drift }, "nftables table drifted from what was written; repairing");
    }
    const desired = this.desired(current);
    const plan = planNft(current, desired);
    if (plan.script) {
      const r = await this.nft(["-f", "-"], plan.script);
      if (r.code !== 0) {
        this.generation = undefined;
        throw new Error(`nft -f (IPv${this.family}, ${plan.script.split("\n").length - 1} commands) failed: ${nftError(r.stderr)}`);
      }
      this.writes++;
      this.log.debug({ family: this.family, commands: plan.script.split("\n").length - 1, replaced: plan.replaced }, "nftables table written");
      // Ours is the one transaction since genBefore only when the generation moved by exactly one.
      const genAfter = await this.currentGeneration();
      this.generation = genBefore !== undefined && genAfter === genBefore + 1 ? genAfter : undefined;
      if (this.generation !== undefined) this.generations.note(this.generation);
    } else {
      // Unchanged (trusted, or read and found as desired): the record holds at genBefore.
      this.generation = genBefore;
    }
    this.record = desired;
    return plan;
  }

  /** Our table as the kernel holds it; undefined when there is none. */
  async read(): Promise<NftTable | undefined> {
    this.reads++;
    const nl = this.reader();
    if (nl) return nl.readTable(this.family, NFT_TABLE);
    const r = await this.nft(["-j", "list", "table", ...this.at.split(" ")]);
    if (r.code !== 0) {
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw new Error(`nft list table ${this.at} failed: ${nftError(r.stderr)}`);
    }
    return parseNftTable(r.stdout, this.family);
  }

  /** Forgets the record: the next apply reads the kernel. */
  forget(): void {
    this.record = undefined;
    this.generation = undefined;
  }

  /**
   * Removes the chains of `tables` (default: all of them, with the sets: the whole table).
   * With some tables left, what remains is written back as the kernel holds it.
   */
  removeAll(tables: readonly TableName[] = TABLE_ORDER): Promise<void> {
    return this.serial(async () => {
      const current = await this.read();
      if (!current) return;
      const left = current.chains.filter((c) => c.table !== undefined && !tables.includes(c.table));
      if (left.length === 0 || TABLE_ORDER.every((t) => tables.includes(t))) {
        const r = await this.nft(["delete", "table", ...this.at.split(" ")]);
        if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) throw new Error(`nft delete table ${this.at} failed: ${nftError(r.stderr)}`);
        this.writes++;
      } else {
        const plan = planNft(current, { ...current, chains: left });
        if (plan.script) {
          const r = await this.nft(["-f", "-"], plan.script);
          if (r.code !== 0) throw new Error(`nft -f (removing ${tables.join(", ")}) failed: ${nftError(r.stderr)}`);
          this.writes++;
        }
      }
      this.record = undefined;
      this.generation = undefined;
      for (const t of tables) this.given.delete(t);
    });
  }
}
