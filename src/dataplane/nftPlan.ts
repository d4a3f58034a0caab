/**
 * The nftables planner (pure): from what our table holds (the driver's record, or the
 * kernel read back with `nft -j list table`) to the desired table, the one `nft -f`
 * transaction that gets there and writes only what differs:
 *
 *   new sets (with elements) -> element deltas of kept sets (deletes first: an interval
 *   may only be re-added once its old shape is gone) -> new chains, empty -> changed and new
 *   chains flushed and refilled -> removed chains flushed, then deleted -> removed sets
 *
 * The kernel applies the transaction whole or not at all, so no order inside it is ever
 * visible; the order only has to satisfy nft's checks (a rule names existing chains and
 * sets, a chain or set is deleted only once nothing references it). What cannot change in
 * place (a set's type, a base chain's hook or priority) replaces the whole table, still in
 * one transaction: `add table` (so that `delete` cannot fail), `delete table`, the table anew.
 */
import type { Family } from "../model/ip.js";
import type { TableName } from "../render/ruleset.js";
import {
  type NftBaseChain,
  type NftChain,
  type NftSet,
  type NftTable,
  NFT_COMMENT_PREFIX,
  NFT_TABLE,
  addChainCommand,
  addRuleCommands,
  addSetCommands,
  elementCommands,
  formatNftTable,
  nftFamily,
} from "../render/nftFormat.js";

export interface NftPlan {
  /** The `nft -f` input; "" when the table already is as desired. */
  script: string;
  /** The whole table was (re)created. */
  replaced: boolean;
  chainsAdded: string[];
  chainsRewritten: string[];
  chainsRemoved: string[];
  setsAdded: string[];
  setsUpdated: string[];
  setsRemoved: string[];
}

const sameBase = (a: NftBaseChain | undefined, b: NftBaseChain | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.type === b.type && a.hook === b.hook && a.priority === b.priority);

const sameRules = (a: NftChain, b: NftChain): boolean => a.rules === b.rules || (a.rules.length === b.rules.length && a.rules.every((r, i) => r.hash === b.rules[i]?.hash));

function emptyPlan(): NftPlan {
  return { script: "", replaced: false, chainsAdded: [], chainsRewritten: [], chainsRemoved: [], setsAdded: [], setsUpdated: [], setsRemoved: [] };
}

function replacement(current: NftTable | undefined, desired: NftTable): NftPlan {
  const at = `${nftFamily(desired.family)} ${NFT_TABLE}`;
  const head = current ? `add table ${at}\ndelete table ${at}\n` : "";
  return {
    ...emptyPlan(),
    script: head + formatNftTable(desired),
    replaced: true,
    chainsAdded: desired.chains.map((c) => c.name),
    setsAdded: desired.sets.map((s) => s.name),
    chainsRemoved: current ? current.chains.map((c) => c.name).filter((n) => !desired.chains.some((c) => c.name === n)) : [],
    setsRemoved: current ? current.sets.map((s) => s.name).filter((n) => !desired.sets.some((s) => s.name === n)) : [],
  };
}

/** The transaction from `current` (undefined: no table of ours) to `desired`. */
export function planNft(current: NftTable | undefined, desired: NftTable): NftPlan {
  if (!current) return replacement(undefined, desired);
  const at = `${nftFamily(desired.family)} ${NFT_TABLE}`;
  const curSets = new Map(current.sets.map((s) => [s.name, s]));
  const curChains = new Map(current.chains.map((c) => [c.name, c]));
  for (const s of desired.sets) {
    const c = curSets.get(s.name);
    if (c && (c.type !== s.type || c.interval !== s.interval)) return replacement(current, desired);
  }
  for (const c of desired.chains) {
    const k = curChains.get(c.name);
    if (k && !sameBase(k.base, c.base)) return replacement(current, desired);
  }
  const plan = emptyPlan();
  const cmds: string[] = [];
  const elementCmds: string[] = [];
  for (const s of desired.sets) {
    const c = curSets.get(s.name);
    if (!c) {
      cmds.push(...addSetCommands(at, s));
      plan.setsAdded.push(s.name);
      continue;
    }
    if (c.elements === s.elements) continue;
    const want = new Set(s.elements);
    const have = new Set(c.elements);
    const gone = c.elements.filter((e) => !want.has(e));
    const added = s.elements.filter((e) => !have.has(e));
    if (!gone.length && !added.length) continue;
    elementCmds.push(...elementCommands("delete", at, s.name, gone));
    elementCmds.push(...elementCommands("add", at, s.name, added));
    plan.setsUpdated.push(s.name);
  }
  // All deletes before all adds: an interval re-added in a new shape must not overlap its old one.
  cmds.push(...elementCmds.filter((c) => c.startsWith("delete")), ...elementCmds.filter((c) => c.startsWith("add")));
  const fill: string[] = [];
  for (const c of desired.chains) {
    const k = curChains.get(c.name);
    if (!k) {
      cmds.push(addChainCommand(at, c));
      fill.push(...addRuleCommands(at, c));
      plan.chainsAdded.push(c.name);
    } else if (!sameRules(k, c)) {
      fill.push(`flush chain ${at} ${c.name}`, ...addRuleCommands(at, c));
      plan.chainsRewritten.push(c.name);
    }
  }
  cmds.push(...fill);
  const want = new Set(desired.chains.map((c) => c.name));
  const removed = current.chains.filter((c) => !want.has(c.name)).map((c) => c.name);
  cmds.push(...removed.map((n) => `flush chain ${at} ${n}`), ...removed.map((n) => `delete chain ${at} ${n}`));
  plan.chainsRemoved.push(...removed);
  const wantSets = new Set(desired.sets.map((s) => s.name));
  for (const s of current.sets) {
    if (wantSets.has(s.name)) continue;
    cmds.push(`delete set ${at} ${s.name}`);
    plan.setsRemoved.push(s.name);
  }
  plan.script = cmds.length ? `${cmds.join("\n")}\n` : "";
  return plan;
}

// ---- reading the kernel back ----

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const isObj = (v: Json | undefined): v is { [k: string]: Json } => typeof v === "object" && v !== null && !Array.isArray(v);

/** An element as `nft -j` gives it -> the text `nft list` prints (and the formatter writes). */
function elementText(e: Json | undefined): string {
  if (typeof e === "string" || typeof e === "number") return String(e);
  if (isObj(e)) {
    const prefix = e["prefix"];
    if (isObj(prefix)) return `${String(prefix["addr"])}/${String(prefix["len"])}`;
    const range = e["range"];
    if (Array.isArray(range)) return `${elementText(range[0])}-${elementText(range[1])}`;
    const concat = e["concat"];
    if (Array.isArray(concat)) return concat.map(elementText).join(" . ");
    if (isObj(e["elem"])) return elementText((e["elem"] as { [k: string]: Json })["val"]);
  }
  return JSON.stringify(e);
}

const TABLES: readonly TableName[] = ["raw", "mangle", "filter", "nat"];
const HOOKS = new Set(["prerouting", "input", "forward", "output", "postrouting"]);

/**
 * Our table as `nft -j list table` shows it, in the planner's terms: chains with the hashes
 * of our rule comments (a rule without one counts as changed), base chains' hook and
 * priority (a policy other than accept counts as changed), sets with their elements.
 */
export function parseNftTable(json: string, family: Family): NftTable {
  const doc = JSON.parse(json) as Json;
  const items = isObj(doc) && Array.isArray(doc["nftables"]) ? doc["nftables"] : [];
  const chains = new Map<string, NftChain>();
  const targets = new Map<string, string[]>();
  const sets: NftSet[] = [];
  for (const item of items) {
    if (!isObj(item)) continue;
    const chain = item["chain"];
    const rule = item["rule"];
    const set = item["set"];
    if (isObj(chain)) {
      const name = String(chain["name"]);
      const hook = chain["hook"];
      const base: NftBaseChain | undefined =
        typeof hook === "string" && HOOKS.has(hook)
          ? { type: chain["type"] === "nat" ? "nat" : "filter", hook: hook as NftBaseChain["hook"], priority: chain["policy"] === "accept" ? Number(chain["prio"]) : Number.NaN }
          : undefined;
      chains.set(name, { name, table: undefined, ...(base ? { base } : {}), rules: [] });
    } else if (isObj(rule)) {
      const name = String(rule["chain"]);
      const comment = typeof rule["comment"] === "string" ? rule["comment"] : "";
      chains.get(name)?.rules.push({ hash: comment.startsWith(NFT_COMMENT_PREFIX) ? comment.slice(NFT_COMMENT_PREFIX.length) : "", text: "" });
      const expr = Array.isArray(rule["expr"]) ? rule["expr"] : [];
      const add = (v: Json | undefined): void => {
        const verdict = isObj(v) ? (v["jump"] ?? v["goto"]) : undefined;
        if (isObj(verdict) && typeof verdict["target"] === "string") targets.set(name, [...(targets.get(name) ?? []), verdict["target"]]);
      };
      for (const e of expr) {
        add(e);
        // A verdict map: { "vmap": { "key": ..., "data": { "set": [[key, verdict], ...] } } }
        const vmap = isObj(e) ? e["vmap"] : undefined;
        const data = isObj(vmap) ? vmap["data"] : undefined;
        const entries = isObj(data) ? data["set"] : undefined;
        if (Array.isArray(entries)) for (const entry of entries) if (Array.isArray(entry)) add(entry[1]);
      }
    } else if (isObj(set)) {
      const type = Array.isArray(set["type"]) ? set["type"].map(String).join(" . ") : String(set["type"]);
      const flags = Array.isArray(set["flags"]) ? set["flags"].map(String) : [];
      const elem = Array.isArray(set["elem"]) ? set["elem"] : [];
      sets.push({ name: String(set["name"]), type, interval: flags.includes("interval"), elements: elem.map(elementText).sort() });
    }
  }
  assignOwners(chains, targets);
  return { family, chains: [...chains.values()], sets: sets.sort((a, b) => a.name.localeCompare(b.name)) };
}

/**
 * Gives each chain read back the table of the base chain (`<table>-<hook>`) it is reached
 * from, through `targets` (a chain's jump, goto and verdict-map targets); a chain no base
 * chain reaches keeps `undefined`. Both readers (nft -j here, nfnetlink) use it.
 */
export function assignOwners(chains: ReadonlyMap<string, NftChain>, targets: ReadonlyMap<string, readonly string[]>): void {
  for (const c of chains.values()) {
    const owner = c.base ? TABLES.find((t) => c.name === `${t}-${c.base?.hook}`) : undefined;
    if (!owner) continue;
    const todo = [c.name];
    while (todo.length) {
      const k = chains.get(todo.pop() as string);
      if (!k || k.table !== undefined) continue;
      k.table = owner;
      todo.push(...(targets.get(k.name) ?? []));
    }
  }
}

/** What differs between two tables, for the drift log: "" when nothing does. */
export function describeDrift(recorded: NftTable, kernel: NftTable): string {
  const p = planNft(kernel, recorded);
  if (!p.script) return "";
  const parts = [
    p.replaced ? "table replaced" : "",
    p.chainsAdded.length && !p.replaced ? `chains missing: ${p.chainsAdded.join(", ")}` : "",
    p.chainsRewritten.length ? `chains edited: ${p.chainsRewritten.join(", ")}` : "",
    p.chainsRemoved.length ? `chains not ours: ${p.chainsRemoved.join(", ")}` : "",
    p.setsAdded.length && !p.replaced ? `sets missing: ${p.setsAdded.join(", ")}` : "",
    p.setsUpdated.length ? `set elements changed: ${p.setsUpdated.join(", ")}` : "",
    p.setsRemoved.length ? `sets not ours: ${p.setsRemoved.join(", ")}` : "",
  ];
  return parts.filter(Boolean).join("; ");
}
