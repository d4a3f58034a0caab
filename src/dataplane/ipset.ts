/**
 * The ipset driver: reads the kernel's sets with `ipset list`, plans with the pure
 * planner (ipsetPlan.ts) and writes with one `ipset -exist restore` per step. It only
 * ever looks at and touches sets named as ours (slc4-/slc6-/slct-), and of those only the
 * ones of its own family, so an IPv4 and an IPv6 driver share one kernel safely.
 *
 * The applier orders the two steps around the iptables change: `prepare` before it (every
 * set a new rule names exists and is filled), `removeStale` after it (a set is destroyed
 * only once no rule references it any more).
 *
 * A value the kernel refuses (`ipset restore` stops at the first line it cannot take, e.g.
 * the unspecified address in a hash:ip set) fails that set only: `prepare` then writes set
 * by set and reports the ones refused, with the kernel's words, for the applier to fail
 * their rules closed. A failing `ipset list` is not a value problem: it throws.
 *
 * Kernel state is cached: the driver records this family's sets as it last wrote or read
 * them. An apply with `trustCache` plans against that record and writes only the delta
 * (`add`/`del` lines, a swap only when a set must be replaced) without running `ipset list`;
 * one without it reads the kernel, and logs what differs from the record (someone else
 * changed our sets) before the plan repairs it. Any failed write drops the record, so the
 * next apply reads. The record cannot know kernel references, so a destroy it plans may be
 * refused (the set is still in use): that too drops the record and the step is planned
 * again from a read, as it always was.
 */
import type { Logger } from "pino";
import type { Family } from "../model/ip.js";
import type { IpsetSpec } from "../render/ipsetSpec.js";
import { run, runOk } from "./exec.js";
import type { KernelReadOptions } from "./iptables.js";
import { CanonicalMemo, type IpsetPlan, type IpsetState, type PlanChunk, type RefusedSet, ipsetDrift, parseIpsetList, planPrepare, planRemoveStale, restoreText, stateAfter } from "./ipsetPlan.js";

export interface IpsetDriverOptions {
  family: Family;
  /** Run inside this network namespace (`ip netns exec`); tests and sluicectl use it. */
  netns?: string | undefined;
  /** The ipset binary (default `ipset`). */
  ipset?: string;
}

export interface IpsetReport {
  /** Whether an `ipset restore` ran. */
  wrote: boolean;
  plan: IpsetPlan;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class IpsetDriver {
  /** How many times we actually called `ipset restore`; tests read it. */
  writes = 0;
  /** How many times we ran `ipset list`; tests and benchmarks read it. */
  reads = 0;
  /** This family's owned sets as last written or read; undefined when unknown (start, after a failed write). */
  private recorded: Map<string, IpsetState> | undefined;
  /** Desired sets' canonical members, so an unchanged set is not parsed again. */
  private readonly memo = new CanonicalMemo();
  readonly family: Family;
  private readonly netns: string | undefined;
  private readonly bin: string;

  constructor(
    opts: IpsetDriverOptions,
    private readonly log: Logger,
  ) {
    this.family = opts.family;
    this.netns = opts.netns;
    this.bin = opts.ipset ?? "ipset";
  }

  private command(args: string[]): [string, string[]] {
    return this.netns ? ["ip", ["netns", "exec", this.netns, this.bin, ...args]] : [this.bin, args];
  }

  /** Every owned set in the kernel (both families), with members and reference counts. */
  async read(): Promise<Map<string, IpsetState>> {
    this.reads++;
    const r = await run(...this.command(["list"]), undefined, 120_000);
    // A failed read must not look like "no sets": we would create them again and fail, or worse.
    if (r.code !== 0) throw new Error(`${this.bin} list failed (exit ${r.code}): ${r.stderr.trim()}`);
    return parseIpsetList(r.stdout);
  }

  /** Forgets the record of what the kernel holds: the next apply reads it. */
  forget(): void {
    this.recorded = undefined;
  }

  /**
   * What to plan against: the record (trustCache, when there is one) or a fresh read,
   * which becomes the record after any drift from the old one is logged.
   */
  private async state(opts: KernelReadOptions): Promise<ReadonlyMap<string, IpsetState>> {
    if (opts.trustCache && this.recorded) return this.recorded;
    const read = await this.read();
    if (this.recorded) {
      const drift = ipsetDrift(this.family, this.recorded, read);
      if (drift.missing.length || drift.unexpected.length || drift.changed.length) {
        this.log.warn({ family: this.family, ...drift }, "ipsets differ from what this agent last wrote; repairing");
      }
    }
    this.recorded = stateAfter(this.family, read, { destroyed: [], after: [] });
    return read;
  }

  private async restore(plan: IpsetPlan, step: string, before: ReadonlyMap<string, IpsetState>): Promise<IpsetReport> {
    if (plan.restore === undefined) {
      this.recorded = stateAfter(this.family, before, plan);
      return { wrote: false, plan };
    }
    try {
      await runOk(...this.command(["-exist", "restore"]), plan.restore);
    } catch (err) {
      this.recorded = undefined;
      throw err;
    }
    this.recorded = stateAfter(this.family, before, plan);
    this.writes++;
    const { created, swapped, updated, recreated, destroyed, memberOps } = plan;
    this.log.info({ family: this.family, step, created, swapped, updated, recreated, destroyed, memberOps }, "ipsets updated");
    return { wrote: true, plan };
  }

  /**
   * Creates missing sets and brings the members of existing ones up to date; leaves sets
   * that are no longer desired alone. Sets with our name but another type or family that
   * a rule still references come back in `plan.blocked` untouched.
   */
  async prepare(desired: readonly IpsetSpec[], opts: KernelReadOptions = {}): Promise<IpsetReport> {
    const before = await this.state(opts);
    this.memo.retain(new Set(desired.map((s) => s.name)));
    const plan = planPrepare(this.family, desired, before, this.memo);
    if (plan.blocked.length) this.log.warn({ family: this.family, sets: plan.blocked }, "ipsets with our name but another type are in use; left for the applier");
    try {
      return await this.restore(plan, "prepare", before);
    } catch (err) {
      if (plan.chunks.length <= 1 && plan.chunks[0]?.set === undefined) throw err;
      this.log.warn({ family: this.family, err: (err as Error).message }, "ipset restore refused part of the update; writing set by set");
      return this.prepareSetBySet(desired);
    }
  }

  /**
   * Plans again from what the kernel holds now (the refused restore applied the lines before
   * the one it stopped at) and writes each set on its own; a set the kernel refuses is
   * reported in `plan.refused`, every other one is written.
   */
  private async prepareSetBySet(desired: readonly IpsetSpec[]): Promise<IpsetReport> {
    // Left unrecorded (the refused sets' kernel state is whatever the failed lines left): the next apply reads.
    this.recorded = undefined;
    const plan = planPrepare(this.family, desired, await this.read(), this.memo);
    const refused: RefusedSet[] = [...plan.refused];
    let wrote = false;
    for (const chunk of plan.chunks) {
      const r = await run(...this.command(["-exist", "restore"]), restoreText([chunk]));
      if (r.code === 0) {
        this.writes++;
        wrote = true;
        continue;
      }
      // The removal of leftover temporaries names no desired set: nothing to fail closed for.
      if (chunk.set === undefined) throw new Error(`${this.bin} restore failed (exit ${r.code}): ${r.stderr.trim()}`);
      refused.push({ name: chunk.set, reason: `the kernel refused ${refusedLine(chunk, r.stderr)}` });
    }
    const done = { ...plan, refused };
    const { created, swapped, updated, recreated, destroyed, memberOps } = plan;
    this.log.info({ family: this.family, step: "prepare", created, swapped, updated, recreated, destroyed, memberOps, refused: refused.map((x) => x.name) }, "ipsets updated set by set");
    return { wrote, plan: done };
  }

  /**
   * Destroys this family's owned sets that are not desired. Run it after the iptables
   * change that stopped referencing them. A set still referenced is retried briefly (a
   * backend may drop its reference a moment after the rule is gone) and then left in
   * place and reported in `plan.inUse`; the next apply tries again.
   */
  async removeStale(desired: readonly IpsetSpec[], retries = 4, opts: KernelReadOptions = {}): Promise<IpsetReport> {
    if (opts.trustCache && this.recorded) {
      const before = this.recorded;
      const plan = planRemoveStale(this.family, desired, before);
      try {
        return await this.restore(plan, "removeStale", before);
      } catch (err) {
        // Most likely a set still referenced (the record cannot know): plan again from the kernel.
        this.log.debug({ family: this.family, err: (err as Error).message }, "destroying stale ipsets from the record failed; reading the kernel");
      }
    }
    let before = await this.state({});
    let plan = planRemoveStale(this.family, desired, before);
    for (let i = 0; i < retries && plan.inUse.length > 0; i++) {
      await sleep(25 * (i + 1));
      before = await this.read();
      plan = planRemoveStale(this.family, desired, before);
    }
    if (plan.inUse.length) this.log.warn({ family: this.family, sets: plan.inUse }, "stale ipsets still referenced; left in place");
    return this.restore(plan, "removeStale", before);
  }

  /**
   * Destroys every set of ours of this family (for `sluicectl cleanup`); fails on sets
   * still in use after `retries` brief retries (a reference can outlive its rule a moment).
   */
  async removeAll(retries = 0): Promise<IpsetReport> {
    const report = await this.removeStale([], retries);
    if (report.plan.inUse.length) throw new Error(`ipsets still referenced: ${report.plan.inUse.join(", ")}`);
    return report;
  }
}

/** `"add slc4-x 0.0.0.0": Null-valued element, ...`: the line ipset names (`Error in line N`) and its message. */
function refusedLine(chunk: PlanChunk, stderr: string): string {
  const text = stderr.trim().replace(/^ipset v[\d.]+:\s*/, "");
  const m = /Error in line (\d+):\s*(.*)$/s.exec(text);
  const line = m ? chunk.lines[Number(m[1]) - 1] : undefined;
  return line !== undefined ? `"${line}": ${(m?.[2] ?? "").trim()}` : text;
}
