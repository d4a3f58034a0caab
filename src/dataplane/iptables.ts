/**
 * The iptables driver: reads with iptables-save, plans with the pure planner, writes
 * with one `iptables-restore --noflush -w` per table. No npm package can do this, so
 * we drive the same binaries kube-proxy and Felix drive.
 *
 * Kernel state is cached per table: the driver records the table it last wrote or found in
 * place (our chains and our jumps, which is all the planner compares). An apply with
 * `trustCache` plans against that record and writes only the chains that changed, without
 * running iptables-save; one without it reads the table, logs what differs from the record
 * (someone else edited our chains) and repairs it. A failed write drops the record, so the
 * next apply reads.
 */
import type { Logger } from "pino";
import type { Family } from "../model/ip.js";
import { type RenderedTable, type RulesetSpec, type TableName, renderTable } from "../render/ruleset.js";
import { run, runOk } from "./exec.js";
import { type ParsedTable, type TablePlan, parseSave, planTable, recordedTable } from "./iptablesPlan.js";

export type IptablesMode = "nft" | "legacy";

export interface IptablesBinaries {
  mode: IptablesMode;
  save: string;
  restore: string;
  /** Run inside this network namespace (`ip netns exec`); tests and sluicectl use it. */
  netns?: string | undefined;
}

export function binaries(family: Family, mode: IptablesMode, netns?: string): IptablesBinaries {
  const base = family === 4 ? "iptables" : "ip6tables";
  return { mode, save: `${base}-${mode}-save`, restore: `${base}-${mode}-restore`, netns };
}

/** The argv that runs `cmd` where the driver points (this namespace or another). */
export function command(bin: IptablesBinaries, cmd: string, args: string[]): [string, string[]] {
  return bin.netns ? ["ip", ["netns", "exec", bin.netns, cmd, ...args]] : [cmd, args];
}

/**
 * Picks legacy or nft the way kube-proxy does: whichever already holds more rules
 * (someone else's, e.g. kubelet's or Docker's) wins; nft on a tie. An explicit
 * setting always wins.
 */
export async function detectMode(setting: "auto" | IptablesMode): Promise<IptablesMode> {
  if (setting !== "auto") return setting;
  const count = async (cmd: string): Promise<number> => {
    const r = await run(cmd, []).catch(() => undefined);
    if (!r || r.code !== 0) return -1;
    return r.stdout.split("\n").filter((l) => l.startsWith("-A ")).length;
  };
  const [legacy, nft] = await Promise.all([count("iptables-legacy-save"), count("iptables-nft-save")]);
  return legacy > nft ? "legacy" : "nft";
}

/** --random-fully needs iptables >= 1.6.2 (and a kernel >= 3.13, which every supported kernel is). */
export async function supportsRandomFully(bin: IptablesBinaries): Promise<boolean> {
  const r = await run(bin.restore.replace(/-restore$/, ""), ["--version"]).catch(() => undefined);
  const m = r ? /v(\d+)\.(\d+)\.(\d+)/.exec(r.stdout) : null;
  if (!m) return false;
  const [maj, min, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return maj > 1 || (maj === 1 && (min > 6 || (min === 6 && patch >= 2)));
}

/**
 * How an apply learns what the kernel holds. By default it reads the kernel first
 * (start-up, the resync timer, after a failed write: whatever is there gets repaired).
 * `trustCache`: plan against what this driver last wrote instead, without reading, when it
 * has a record of it (a change between resyncs); with no record it reads anyway.
 */
export interface KernelReadOptions {
  trustCache?: boolean;
}

export interface ApplyReport {
  table: TableName;
  wrote: boolean;
  plan: TablePlan;
}

export class IptablesDriver {
  /** How many times we actually called iptables-restore; tests read it. */
  writes = 0;
  /** How many times we ran iptables-save; tests and benchmarks read it. */
  reads = 0;
  /** Per table, what this driver last wrote or found in place. */
  private readonly recorded = new Map<TableName, RenderedTable>();

  constructor(
    readonly bin: IptablesBinaries,
    private readonly log: Logger,
  ) {}

  async readTable(table: TableName): Promise<ReturnType<typeof parseSave>> {
    this.reads++;
    const r = await run(...command(this.bin, this.bin.save, ["-t", table]));
    // Reading an empty table succeeds (both backends); a failure must not read as "empty",
    // or we would insert a second copy of our jumps.
    if (r.code !== 0) throw new Error(`${this.bin.save} -t ${table} failed (exit ${r.code}): ${r.stderr.trim()}`);
    return parseSave(r.stdout);
  }

  /** Reconciles every table of the ruleset; touches only our chains and our jump rules. */
  async apply(spec: RulesetSpec, opts: KernelReadOptions = {}): Promise<ApplyReport[]> {
    const reports: ApplyReport[] = [];
    for (const t of spec.tables) {
      const rendered: RenderedTable = renderTable(t);
      const actual = await this.state(t.table, spec.family, opts);
      const plan = planTable(rendered, actual);
      if (plan.restore !== undefined) {
        try {
          await runOk(...command(this.bin, this.bin.restore, ["-w", "5", "--noflush"]), plan.restore);
        } catch (err) {
          this.recorded.delete(t.table);
          throw err;
        }
        this.writes++;
        this.log.info({ table: t.table, family: spec.family, rewritten: plan.rewritten, removed: plan.removed, hooksFixed: plan.hooksFixed }, "iptables updated");
      }
      this.recorded.set(t.table, rendered);
      reports.push({ table: t.table, wrote: plan.restore !== undefined, plan });
    }
    return reports;
  }

  /** Forgets what the kernel holds: the next apply of every table reads it. */
  forget(): void {
    this.recorded.clear();
  }

  /** What to plan one table against: the record (trustCache, when there is one) or a fresh read. */
  private async state(table: TableName, family: Family, opts: KernelReadOptions): Promise<ParsedTable | undefined> {
    const last = this.recorded.get(table);
    if (opts.trustCache && last) return recordedTable(last);
    const actual = (await this.readTable(table)).get(table);
    if (last) {
      const drift = planTable(last, actual);
      if (drift.restore !== undefined) {
        // rewritten: ours, changed or gone; removed: owned chains we did not write; hooksFixed: our jumps moved or gone.
        this.log.warn({ table, family, changed: drift.rewritten, unexpected: drift.removed, hooks: drift.hooksFixed }, "iptables chains differ from what this agent last wrote; repairing");
      }
    }
    return actual;
  }

  /** Removes every chain and jump rule of ours from the given tables. */
  async removeAll(family: Family, tables: readonly TableName[]): Promise<ApplyReport[]> {
    return this.apply({ family, tables: tables.map((table) => ({ table, chains: [], hooks: [] })) });
  }
}
