/**
 * The desired tables as plain data, in two forms:
 * - TableSpec / Ruleset: chains of structured rules (rules.ts), what the renderers produce
 *   and a rules dataplane (src/dataplane/rulesDataplane.ts) takes;
 * - RulesetSpec: the same with every rule as iptables-restore text, what the iptables
 *   driver (src/dataplane/iptables.ts) takes; iptablesFormat.ts turns one into the other.
 *
 * And the pure step that stamps every text rule with a hash comment. The hash covers table,
 * chain, position, the previous rule's hash and the rule text, so a resync can tell in one
 * pass which of our chains someone edited, without parsing iptables-save's canonical rule syntax.
 */
import { createHash } from "node:crypto";
import type { Family } from "../model/ip.js";
import { HASH_COMMENT_PREFIX, hookText, withComment } from "./iptablesFormat.js";
import type { Rule } from "./rules.js";

export type TableName = "filter" | "nat" | "mangle" | "raw";

/** Chains we own: everything else in the kernel belongs to someone else. */
export const OWNED_CHAIN_PREFIXES = ["SLUICE-", "slc-"] as const;

/** A jump from a built-in chain into one of ours, kept at position 1. */
export interface HookSpec {
  builtin: string;
  target: string;
}

export interface ChainSpec {
  name: string;
  rules: Rule[];
}

export interface TableSpec {
  table: TableName;
  chains: ChainSpec[];
  hooks: HookSpec[];
}

/** Every table of ours of one family, structured. */
export interface Ruleset {
  family: Family;
  tables: TableSpec[];
}

export interface TextChainSpec {
  name: string;
  /** Rule bodies as iptables-restore takes them after "-A <chain> ", without our comment. */
  rules: string[];
}

export interface TextTableSpec {
  table: TableName;
  chains: TextChainSpec[];
  hooks: HookSpec[];
}

/** The iptables driver's input: a Ruleset with its rules as iptables-restore text (formatRuleset). */
export interface RulesetSpec {
  family: Family;
  tables: TextTableSpec[];
}

export interface RenderedRule {
  hash: string;
  /** The full body for "-A <chain> <body>", comment included. */
  body: string;
}

export interface RenderedChain {
  name: string;
  rules: RenderedRule[];
}

export interface RenderedTable {
  table: TableName;
  chains: RenderedChain[];
  hooks: { builtin: string; target: string; rule: RenderedRule }[];
}

export const isOwnedChain = (name: string): boolean => OWNED_CHAIN_PREFIXES.some((p) => name.startsWith(p));

function hashOf(parts: string[]): string {
  return createHash("sha256").update(parts.join("\u0000")).digest("hex").slice(0, 16);
}

// The driver and planner import these from here (the text form's home before the formatter existed).
export { HASH_COMMENT_PREFIX, withComment };

/** Each chain's hashed rules by the identity of its text list, per table and chain name (formatRules hands out the same list while a chain is unchanged). */
const renderedChains = new WeakMap<readonly string[], Map<string, RenderedChain>>();

function renderChain(table: string, name: string, texts: readonly string[]): RenderedChain {
  const key = `${table}\u0000${name}`;
  let byName = renderedChains.get(texts);
  const hit = byName?.get(key);
  if (hit) return hit;
  let prev = "";
  const rules = texts.map((text, i) => {
    const hash = hashOf([table, name, String(i), prev, text]);
    prev = hash;
    return { hash, body: withComment(text, hash) };
  });
  const chain = { name, rules };
  if (!byName) renderedChains.set(texts, (byName = new Map()));
  byName.set(key, chain);
  return chain;
}

export function renderTable(spec: TextTableSpec): RenderedTable {
  const chains = spec.chains.map((c) => renderChain(spec.table, c.name, c.rules));
  const hooks = spec.hooks.map((h) => {
    const text = hookText(h.target);
    const hash = hashOf([spec.table, h.builtin, "hook", text]);
    return { builtin: h.builtin, target: h.target, rule: { hash, body: withComment(text, hash) } };
  });
  return { table: spec.table, chains, hooks };
}
