/**
 * Pure diffing of desired tables against what iptables-save shows: which of our chains
 * to rewrite or remove, and whether our jumps sit first in the built-in chains. The
 * result is one iptables-restore --noflush input (applied atomically), or nothing when
 * everything is already in place, so a no-op resync writes nothing at all.
 */
import { HASH_COMMENT_PREFIX, type RenderedChain, type RenderedTable, isOwnedChain } from "../render/ruleset.js";

export interface ParsedTable {
  table: string;
  /** Chain name -> rule bodies (what follows "-A <chain> "), in order. */
  chains: Map<string, string[]>;
}

const HASH_RE = new RegExp(`--comment "?${HASH_COMMENT_PREFIX}([0-9a-f]{16})"?`);

export function ruleHash(body: string): string | undefined {
  return HASH_RE.exec(body)?.[1];
}

export function isOurRule(body: string): boolean {
  return body.includes(`--comment "${HASH_COMMENT_PREFIX}`) || body.includes(`--comment ${HASH_COMMENT_PREFIX}`);
}

/** Parses `iptables-save` output (possibly of several tables). */
export function parseSave(text: string): Map<string, ParsedTable> {
  const tables = new Map<string, ParsedTable>();
  let cur: ParsedTable | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) {
      cur = { table: line.slice(1).trim(), chains: new Map() };
      tables.set(cur.table, cur);
    } else if (!cur || line.startsWith("#") || line === "COMMIT" || line.trim() === "") {
      continue;
    } else if (line.startsWith(":")) {
      const name = line.slice(1).split(" ")[0] as string;
      if (!cur.chains.has(name)) cur.chains.set(name, []);
    } else if (line.startsWith("-A ")) {
      const rest = line.slice(3);
      const sp = rest.indexOf(" ");
      const chain = sp < 0 ? rest : rest.slice(0, sp);
      const body = sp < 0 ? "" : rest.slice(sp + 1);
      const list = cur.chains.get(chain) ?? [];
      list.push(body);
      cur.chains.set(chain, list);
    }
  }
  return tables;
}

/**
 * A table as the planner sees it once `rendered` is in place: our chains with their rules,
 * and in each built-in chain our jumps first. Other tools' rules are left out: the planner
 * only looks at ours and their positions. The driver's record of what it wrote.
 */
export function recordedTable(rendered: RenderedTable): ParsedTable {
  const chains = new Map<string, string[]>();
  for (const c of rendered.chains) chains.set(c.name, recordedBodies(c));
  for (const h of rendered.hooks) chains.set(h.builtin, [...(chains.get(h.builtin) ?? []), h.rule.body]);
  return { table: rendered.table, chains };
}

/**
 * A rendered chain's rule bodies, by identity, and the chain each such list was made from.
 * The renderer hands out an unchanged chain as the same RenderedChain, so planning against
 * the record of the last write can tell such a chain unchanged without hashing its rules
 * again (at 5,000 pods that is some 18,000 regex matches per apply).
 */
const bodiesOf = new WeakMap<RenderedChain, string[]>();
const madeFrom = new WeakMap<readonly string[], RenderedChain>();

function recordedBodies(c: RenderedChain): string[] {
  let bodies = bodiesOf.get(c);
  if (!bodies) {
    bodies = c.rules.map((r) => r.body);
    bodiesOf.set(c, bodies);
    madeFrom.set(bodies, c);
  }
  return bodies;
}

export interface TablePlan {
  /** The restore input for this table, or undefined when nothing needs to change. */
  restore: string | undefined;
  rewritten: string[];
  removed: string[];
  hooksFixed: string[];
}

export function planTable(desired: RenderedTable, actual: ParsedTable | undefined): TablePlan {
  const actualChains = actual?.chains ?? new Map<string, string[]>();
  const declare: string[] = [];
  const body: string[] = [];
  const tail: string[] = [];
  const rewritten: string[] = [];
  const removed: string[] = [];
  const hooksFixed: string[] = [];
  const wanted = new Set(desired.chains.map((c) => c.name));

  for (const chain of desired.chains) {
    const have = actualChains.get(chain.name);
    const same = have !== undefined && (madeFrom.get(have) === chain || (have.length === chain.rules.length && have.every((r, i) => ruleHash(r) === chain.rules[i]?.hash)));
    if (same) continue;
    rewritten.push(chain.name);
    declare.push(`:${chain.name} - [0:0]`); // with --noflush, declaring a chain flushes it
    for (const r of chain.rules) body.push(`-A ${chain.name} ${r.body}`);
  }

  // Jumps from built-in chains: exactly one of ours, first, with the expected hash.
  const builtins = new Set(desired.hooks.map((h) => h.builtin));
  for (const [name, rules] of actualChains) {
    if (!isOwnedChain(name) && rules.some(isOurRule)) builtins.add(name);
  }
  for (const builtin of [...builtins].sort()) {
    const rules = actualChains.get(builtin) ?? [];
    const hooks = desired.hooks.filter((h) => h.builtin === builtin);
    const ours = rules.map((r, i) => ({ r, i })).filter(({ r }) => isOurRule(r));
    const inPlace = ours.length === hooks.length && hooks.every((h, i) => ours[i]?.i === i && ruleHash(ours[i]?.r ?? "") === h.rule.hash);
    if (inPlace) continue;
    hooksFixed.push(builtin);
    for (const { r } of ours) body.push(`-D ${builtin} ${r}`);
    // Insert in reverse so that the first hook ends up at position 1.
    for (const h of [...hooks].reverse()) body.push(`-I ${builtin} 1 ${h.rule.body}`);
  }

  for (const name of [...actualChains.keys()].sort()) {
    if (!isOwnedChain(name) || wanted.has(name)) continue;
    removed.push(name);
    declare.push(`:${name} - [0:0]`);
    tail.push(`-X ${name}`);
  }

  if (declare.length === 0 && body.length === 0 && tail.length === 0) return { restore: undefined, rewritten, removed, hooksFixed };
  const restore = [`*${desired.table}`, ...declare, ...body, ...tail, "COMMIT", ""].join("\n");
  return { restore, rewritten, removed, hooksFixed };
}
