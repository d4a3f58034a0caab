/**
 * What the agent needs of a policy / host-rules dataplane for one family, whatever writes
 * the kernel: reconcile it to a desired state (tables of structured rules, src/render/rules.ts,
 * and the sets they name), remove everything of ours, and count writes (a no-op apply
 * writes nothing). PolicyDataplane (iptables + ipset) is the implementation today; a native
 * nftables one would take the same rulesets.
 */
import type { Family } from "../model/ip.js";
import type { IpsetSpec } from "../render/ipsetSpec.js";
import type { Ruleset, TableName } from "../render/ruleset.js";
import type { KernelReadOptions } from "./iptables.js";

export interface RulesApplyReport {
  family: Family;
  /** True when anything at all was written. */
  wrote: boolean;
  /** Sets that had to be recreated behind a fail-closed ruleset (type or family changed under a live rule). */
  failClosedFor: string[];
  /** Sets that could not be written: the rules naming them are DROP until a later apply writes them. */
  refusedSets: Array<{ name: string; reason: string }>;
  ms: number;
}

export interface RulesDataplane {
  readonly family: Family;
  /** Total kernel writes so far; a no-op apply leaves it unchanged. */
  readonly writes: number;
  /**
   * Reconciles the tables of `ruleset` and the sets to the desired state, in an order that
   * never leaves a rule naming a missing set. A rule naming a set that cannot be written
   * drops its traffic (fail closed) until a later apply writes the set.
   */
  apply(family: Family, ruleset: Ruleset, sets: readonly IpsetSpec[], opts?: KernelReadOptions): Promise<RulesApplyReport>;
  /** Reconciles the tables of `ruleset` only (no set of ours may be named): the nat table, on its own schedule. */
  applyTables(ruleset: Ruleset, opts?: KernelReadOptions): Promise<void>;
  /** Removes our chains, jumps (of `tables`) and this family's sets. */
  removeAll(tables?: readonly TableName[]): Promise<void>;
}
