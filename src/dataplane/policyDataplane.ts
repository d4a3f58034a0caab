/**
 * The policy applier for one family (the iptables + ipset RulesDataplane): ipsets and
 * iptables reconciled in the one order that never leaves a rule pointing at a missing set:
 *
 *   1. ipsets.prepare(desired)   create new sets, update members (swap or in place)
 *   2. iptables.apply(ruleset)   one `iptables-restore --noflush -w` per table, per-chain diff
 *                                (the structured rules become text here, just before the driver)
 *   3. ipsets.removeStale(...)   destroy our sets no rule references any more
 *
 * Each step plans against what the kernel holds and writes only what differs, so a no-op
 * apply writes nothing and the same call serves start-up, updates and drift repair. With
 * `trustCache` (a change between resyncs) "what the kernel holds" is the drivers' record
 * of what they last wrote, and nothing is read; without it (start-up, the resync timer,
 * after a failure) the kernel is read and any drift from the record is logged and
 * repaired. Any failure forgets the records, so the next apply reads. The fail-closed
 * paths below always read.
 *
 * A set that carries a desired name but another type or family, while a rule still uses it,
 * cannot be swapped (the kernel refuses) nor destroyed. That should not happen (set names
 * hash their definition), but if it does the applier fails closed: it first applies the
 * ruleset with every rule that names such a set replaced by DROP, recreates the set, then
 * applies the real ruleset. Nothing ever matches a set of the wrong type.
 *
 * A set that cannot be written (a member the kernel refuses, such as an unspecified
 * address in a hash:ip set, or one the planner cannot write) fails closed for the rules
 * that name it, and for nothing else: those rules become DROP (same positions), every
 * other set and rule is applied, and the next apply tries the set again. One bad value
 * never freezes the node's policy.
 */
import type { Logger } from "pino";
import type { Family } from "../model/ip.js";
import { type IpsetSpec, isOwnedIpset } from "../render/ipsetSpec.js";
import { formatRuleset } from "../render/iptablesFormat.js";
import type { Ruleset, TableName } from "../render/ruleset.js";
import { type Rule, DROP, setsOf } from "../render/rules.js";
import { type IpsetReport, IpsetDriver } from "./ipset.js";
import type { RefusedSet } from "./ipsetPlan.js";
import { type ApplyReport, IptablesDriver, type IptablesMode, type KernelReadOptions, binaries } from "./iptables.js";
import type { RulesApplyReport, RulesDataplane } from "./rulesDataplane.js";

export interface PolicyDataplaneOptions {
  family: Family;
  mode: IptablesMode;
  /** Run inside this network namespace (tests, sandbox). */
  netns?: string | undefined;
  log: Logger;
}

/** What the iptables + ipset dataplane reports of an apply, beyond what every rules dataplane does. */
export interface PolicyApplyReport extends RulesApplyReport {
  prepare: IpsetReport;
  iptables: ApplyReport[];
  removeStale: IpsetReport;
  refusedSets: RefusedSet[];
}

/**
 * The sets a chain's rules name, by rules array: the render keeps an unchanged chain's
 * rules as the same array, so an apply looks only at the chains a change made anew (tens
 * of thousands of rules at scale, walked on every apply, were a visible part of one).
 */
const chainSets = new WeakMap<readonly Rule[], readonly string[]>();

function setsOfChain(rules: readonly Rule[]): readonly string[] {
  let sets = chainSets.get(rules);
  if (sets === undefined) {
    sets = [...new Set(rules.flatMap(setsOf))];
    chainSets.set(rules, sets);
  }
  return sets;
}

/** Names of sets that rules of the ruleset reference. */
export function referencedSets(ruleset: Ruleset): Set<string> {
  const out = new Set<string>();
  for (const t of ruleset.tables) for (const c of t.chains) for (const s of setsOfChain(c.rules)) out.add(s);
  return out;
}

/**
 * What every rules dataplane checks before it writes anything: the ruleset is of its
 * family, and every set of ours a rule names is among the desired sets (else the write
 * would fail half-way, or a rule would name nothing).
 */
export function checkRulesInput(what: string, own: Family, family: Family, ruleset: Ruleset, sets: readonly IpsetSpec[]): void {
  if (family !== own || ruleset.family !== own) throw new Error(`IPv${own} ${what} given an IPv${family === own ? ruleset.family : family} ruleset`);
  const desired = new Set(sets.map((s) => s.name));
  const missing = [...referencedSets(ruleset)].filter((n) => isOwnedIpset(n) && !desired.has(n));
  if (missing.length) throw new Error(`rules reference sets that are not desired: ${missing.sort().join(", ")}`);
}

const namesAny = (r: Rule, sets: ReadonlySet<string>): boolean => setsOf(r).some((s) => sets.has(s));

/** The rules (with their chain) that name one of `sets`. */
export function* referencingRules(ruleset: Ruleset, sets: ReadonlySet<string>): Generator<{ chain: string; rule: Rule }> {
  for (const t of ruleset.tables) for (const c of t.chains) for (const r of c.rules) if (namesAny(r, sets)) yield { chain: c.name, rule: r };
}

const DROP_RULE: Rule = { match: [], action: DROP };

/** The ruleset with every rule that names one of `sets` replaced by DROP (same positions). */
export function failClosedRuleset(ruleset: Ruleset, sets: ReadonlySet<string>): Ruleset {
  return {
    ...ruleset,
    tables: ruleset.tables.map((t) => ({ ...t, chains: t.chains.map((c) => ({ ...c, rules: c.rules.map((r) => (namesAny(r, sets) ? DROP_RULE : r)) })) })),
  };
}

export class PolicyDataplane implements RulesDataplane {
  readonly family: Family;
  readonly iptables: IptablesDriver;
  readonly ipsets: IpsetDriver;
  private readonly log: Logger;
  /** Applies run one at a time: two overlapping plans would fight over the same sets and chains. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: PolicyDataplaneOptions) {
    this.family = opts.family;
    this.log = opts.log;
    this.iptables = new IptablesDriver(binaries(opts.family, opts.mode, opts.netns), opts.log);
    this.ipsets = new IpsetDriver({ family: opts.family, netns: opts.netns }, opts.log);
  }

  /** Total writes (iptables-restore + ipset restore) so far; a no-op apply leaves it unchanged. */
  get writes(): number {
    return this.iptables.writes + this.ipsets.writes;
  }

  /**
   * Reconciles the kernel to `ruleset` and `ipsets`. Checks before writing anything: the
   * family matches this instance, and every owned set a rule names is in `ipsets` (else
   * iptables-restore would fail half-way through the apply).
   */
  apply(family: Family, ruleset: Ruleset, ipsets: readonly IpsetSpec[], opts: KernelReadOptions = {}): Promise<PolicyApplyReport> {
    const next = this.queue.then(() => this.applyNow(family, ruleset, ipsets, opts));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * The tables alone (the nat table, on its own schedule: it names no set of ours), through
   * the same queue; a failure forgets the drivers' records as an apply's does.
   */
  applyTables(ruleset: Ruleset, opts: KernelReadOptions = {}): Promise<void> {
    const next = this.queue.then(async () => {
      if (ruleset.family !== this.family) throw new Error(`IPv${this.family} dataplane given an IPv${ruleset.family} ruleset`);
      try {
        await this.iptables.apply(formatRuleset(ruleset), opts);
      } catch (err) {
        this.forget();
        throw err;
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async applyNow(family: Family, ruleset: Ruleset, ipsets: readonly IpsetSpec[], opts: KernelReadOptions): Promise<PolicyApplyReport> {
    try {
      return await this.applyOnce(family, ruleset, ipsets, opts);
    } catch (err) {
      this.forget();
      throw err;
    }
  }

  /** Forgets both drivers' records of the kernel: the next apply reads it. */
  forget(): void {
    this.iptables.forget();
    this.ipsets.forget();
  }

  /** Kernel reads so far (iptables-save + ipset list); an apply that trusts the records adds none. */
  get reads(): number {
    return this.iptables.reads + this.ipsets.reads;
  }

  private async applyOnce(family: Family, ruleset: Ruleset, ipsets: readonly IpsetSpec[], opts: KernelReadOptions): Promise<PolicyApplyReport> {
    const started = Date.now();
    checkRulesInput("policy dataplane", this.family, family, ruleset, ipsets);

    const before = this.writes;
    const readsBefore = this.reads;
    let prepare = await this.ipsets.prepare(ipsets, opts);
    const failClosedFor = [...prepare.plan.blocked];
    if (failClosedFor.length) {
      this.log.error({ family, sets: failClosedFor }, "ipsets of the wrong type are in use; dropping their traffic while they are recreated");
      await this.iptables.apply(formatRuleset(failClosedRuleset(ruleset, new Set([...failClosedFor, ...prepare.plan.refused.map((r) => r.name)]))));
      // Our rules no longer reference them; nothing else should, but never spin on it.
      let retry = await this.ipsets.prepare(ipsets);
      for (let i = 0; i < 4 && retry.plan.blocked.length; i++) {
        await new Promise((r) => setTimeout(r, 25 * (i + 1)));
        retry = await this.ipsets.prepare(ipsets);
      }
      if (retry.plan.blocked.length) {
        throw new Error(`ipsets ${retry.plan.blocked.join(", ")} have the wrong type and are still referenced by rules we do not own; their rules stay DROP`);
      }
      prepare = retry;
    }
    const refusedSets = prepare.plan.refused;
    const refused = new Set(refusedSets.map((r) => r.name));
    if (refused.size) {
      const rules = [...referencingRules(ruleset, refused)].length;
      this.log.error({ family, sets: refusedSets, rules }, "ipsets that cannot be written: the rules that use them drop their traffic (fail closed); everything else is applied");
    }
    // Fail-closed or refused sets mean the kernel is not what was planned: read it for the rest.
    const trusted: KernelReadOptions = failClosedFor.length || refused.size ? {} : opts;
    const iptables = await this.iptables.apply(formatRuleset(refused.size ? failClosedRuleset(ruleset, refused) : ruleset), trusted);
    // A refused set is named by no rule now: whatever of it is in the kernel goes, and the next apply writes it afresh.
    // prepare has just planned against the kernel (read on a resync, or the record a change
    // trusts), and the driver's record is what it left: removeStale plans against that
    // record rather than listing every set again. A destroy the kernel refuses (a set some
    // rule still names, which the record cannot know) sends it back to reading.
    const removeStale = await this.ipsets.removeStale(
      ipsets.filter((s) => !refused.has(s.name)),
      undefined,
      failClosedFor.length || refused.size ? {} : { trustCache: true },
    );
    const report: PolicyApplyReport = { family, wrote: this.writes > before, prepare, iptables, removeStale, failClosedFor, refusedSets, ms: Date.now() - started };
    const reads = this.reads - readsBefore;
    if (!report.wrote) this.log.debug({ family, ms: report.ms, reads }, "policy dataplane checked");
    if (report.wrote) {
      this.log.debug(
        {
          family,
          ms: report.ms,
          reads,
          setsCreated: prepare.plan.created,
          setsSwapped: prepare.plan.swapped,
          setsUpdated: prepare.plan.updated,
          setsDestroyed: removeStale.plan.destroyed,
          chainsRewritten: iptables.flatMap((r) => r.plan.rewritten),
          chainsRemoved: iptables.flatMap((r) => r.plan.removed),
          hooksFixed: iptables.flatMap((r) => r.plan.hooksFixed),
        },
        "policy dataplane applied",
      );
    }
    return report;
  }

  /** Removes our chains, jumps and this family's sets (for cleanup). */
  async removeAll(tables: readonly TableName[] = ["raw", "filter"]): Promise<void> {
    await this.iptables.removeAll(this.family, tables);
    await this.ipsets.removeAll();
  }
}
