/**
 * The desired iptables state as plain data, and the pure step that stamps every rule
 * with a hash comment. The hash covers table, chain, position, the previous rule's hash
 * and the rule text, so a resync can tell in one pass which of our chains someone
 * edited, without parsing iptables-save's canonical rule syntax.
 */
import { createHash } from "node:crypto";
import type { Family } from "../model/ip.js";

export type TableName = "filter" | "nat" | "mangle" | "raw";

/** Chains we own: everything else in the kernel belongs to someone else. */
export const OWNED_CHAIN_PREFIXES = ["SLUICE-", "slc-"] as const;
export const HASH_COMMENT_PREFIX = "sluice:";

export interface ChainSpec {
  name: string;
  /** Rule bodies as iptables-restore takes them after "-A <chain> ", without our comment. */
  rules: string[];
}

/** A jump from a built-in chain into one of ours, kept at position 1. */
export interface HookSpec {
  builtin: string;
  target: string;
}

export interface TableSpec {
  table: TableName;
  chains: ChainSpec[];
  hooks: HookSpec[];
}

export interface RulesetSpec {
  family: Family;
  tables: TableSpec[];
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

/** Puts the hash comment right before the target (`-j`/`-g`), where iptables-save prints it. */
export function withComment(body: string, hash: string): string {
  const comment = `-m comment --comment "${HASH_COMMENT_PREFIX}${hash}"`;
  const m = /(^|\s)(-[jg] \S.*)$/.exec(body);
  if (!m) return `${body} ${comment}`.trim();
  const before = body.slice(0, m.index).trim();
  return `${before ? `${before} ` : ""}${comment} ${m[2]}`;
}

export function renderTable(spec: TableSpec): RenderedTable {
  const chains = spec.chains.map((c) => {
    let prev = "";
    const rules = c.rules.map((text, i) => {
      const hash = hashOf([spec.table, c.name, String(i), prev, text]);
      prev = hash;
      return { hash, body: withComment(text, hash) };
    });
    return { name: c.name, rules };
  });
  const hooks = spec.hooks.map((h) => {
    const text = `-j ${h.target}`;
    const hash = hashOf([spec.table, h.builtin, "hook", text]);
    return { builtin: h.builtin, target: h.target, rule: { hash, body: withComment(text, hash) } };
  });
  return { table: spec.table, chains, hooks };
}
