/**
 * Structured rules (rules.ts) and desired sets (ipsetSpec.ts) -> native nftables: the one
 * module under src/render that knows nft syntax, as iptablesFormat.ts is for iptables.
 *
 * One table per family, `ip sluice` and `ip6 sluice`, owned entirely by Sluice. Per family
 * because the renderers produce one ruleset per family whose chains carry the same names
 * in both (an `inet` table would need every name qualified), and so that each family is
 * one transaction and one read-back of its own, as the iptables path is.
 *
 * The mapping, iptables -> nftables:
 * - each (iptables table, built-in chain) our hooks jump from becomes a base chain of our
 *   table named `<table>-<builtin>` (`filter-forward`), hooked with that table's priority
 *   (raw -300, mangle -150, filter 0, nat dstnat -100 / srcnat 100), policy accept, holding
 *   the jumps. Filter at 0 runs after kube-proxy's DNAT (-100) and its own filter chains
 *   (-110), so Service traffic is policed by its real destination. A drop in any base chain
 *   of any table is final; an accept ends only that base chain, which is why the FORWARD
 *   fix for Docker's DROP policy stays an iptables rule (agent/hostRules.ts);
 * - our own chains keep their names (one name may not be used by two iptables tables); the
 *   endpoint dispatch (one rule per local pod's interface) becomes one verdict map lookup;
 * - ipsets become named sets (their members read with iptablesFormat.ts's parsers, the
 *   one place that knows ipset member syntax): hash:ip -> `ipv4_addr`, hash:net -> an interval set whose
 *   elements are the addresses the ipset matches (its `nomatch` exceptions carved out,
 *   longest prefix deciding, as the kernel's hash:net does), hash:ip,port -> the
 *   concatenation `ipv4_addr . inet_proto . inet_service`, looked up with
 *   `ip daddr . meta l4proto . th dport`;
 * - every rule carries `comment "sluice:<hash>"`: the hash covers chain, position, the
 *   previous rule's hash and the rule text, so a read-back compares chains by comments alone.
 */
import { createHash } from "node:crypto";
import { type Family, bitsOf, cidr, formatCidr, formatIp, parseCidr } from "../model/ip.js";
import { parseIpsetNetMember, parseIpsetPortMember } from "./iptablesFormat.js";
import type { IpsetSpec } from "./ipsetSpec.js";
import type { Ruleset, TableName } from "./ruleset.js";
import type { Action, AddrDir, Match, PortRange, Rule } from "./rules.js";

export const NFT_TABLE = "sluice";
export const NFT_COMMENT_PREFIX = "sluice:";

export type NftFamily = "ip" | "ip6";
export const nftFamily = (f: Family): NftFamily => (f === 4 ? "ip" : "ip6");

export interface NftBaseChain {
  type: "filter" | "nat";
  hook: "prerouting" | "input" | "forward" | "output" | "postrouting";
  priority: number;
}

export interface NftRule {
  hash: string;
  /** The statement text for `add rule <family> sluice <chain> <text>`, comment included. */
  text: string;
}

export interface NftChain {
  name: string;
  /**
   * The iptables table this chain's rules came from: an apply of one table replaces only
   * its chains. A chain read back from the kernel gets the table of the base chain it is
   * reached from; undefined: reached from none (it does nothing, and goes).
   */
  table: TableName | undefined;
  base?: NftBaseChain;
  rules: NftRule[];
}

export interface NftSet {
  name: string;
  /** The nft type: `ipv4_addr`, or a concatenation `ipv4_addr . inet_proto . inet_service`. */
  type: string;
  interval: boolean;
  /** Elements as `nft list` prints them (prefix, range `a-b`, address, `a . tcp . 80`), sorted. */
  elements: string[];
}

export interface NftTable {
  family: Family;
  chains: NftChain[];
  sets: NftSet[];
}

const PRIORITY: Record<TableName, number> = { raw: -300, mangle: -150, filter: 0, nat: 0 };

export function baseChainOf(table: TableName, builtin: string): NftBaseChain {
  const hook = builtin.toLowerCase();
  if (hook !== "prerouting" && hook !== "input" && hook !== "forward" && hook !== "output" && hook !== "postrouting") {
    throw new Error(`no nftables hook for the built-in chain ${builtin} of the ${table} table`);
  }
  if (table === "nat") return { type: "nat", hook, priority: hook === "prerouting" || hook === "output" ? -100 : 100 };
  return { type: "filter", hook, priority: PRIORITY[table] };
}

export const baseChainName = (table: TableName, builtin: string): string => `${table}-${builtin.toLowerCase()}`;

// ---- matches and actions ----

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`;
const ne = (not: boolean | undefined): string => (not ? "!= " : "");
const portText = (p: PortRange): string => (p.from === p.to ? `${p.from}` : `${p.from}-${p.to}`);
const CT_STATE: Record<string, string> = { NEW: "new", RELATED: "related", ESTABLISHED: "established", INVALID: "invalid", UNTRACKED: "untracked" };

function addrField(family: Family, dir: AddrDir): string {
  return `${nftFamily(family)} ${dir === "src" ? "saddr" : "daddr"}`;
}

/** The lookup key of a set match: one address, or (address, protocol, port) for an address-and-port set. */
function setKey(family: Family, dirs: readonly AddrDir[]): string {
  const [addr, port] = dirs;
  if (dirs.length === 1 && addr) return addrField(family, addr);
  if (dirs.length === 2 && addr && port) return `${addrField(family, addr)} . meta l4proto . th ${port === "src" ? "sport" : "dport"}`;
  throw new Error(`a set match of ${dirs.length} dimensions has no nftables form`);
}

export function formatNftMatch(m: Match, family: Family): string {
  switch (m.kind) {
    case "iface":
      return `${m.dir === "in" ? "iifname" : "oifname"} "${m.name}${m.prefix ? "*" : ""}"`;
    case "addr":
      return `${addrField(family, m.dir)} ${ne(m.not)}${m.cidr}`;
    case "protocol":
      return `meta l4proto ${m.protocol}`;
    case "set":
      return `${setKey(family, m.dirs)} ${ne(m.not)}@${m.set}`;
    case "ports":
      return [...(m.src ? [`${m.protocol} sport ${ne(m.src.not)}${portText(m.src)}`] : []), ...(m.dst ? [`${m.protocol} dport ${ne(m.dst.not)}${portText(m.dst)}`] : [])].join(" ");
    case "icmp": {
      const p = m.family === 4 ? "icmp" : "icmpv6";
      // "not (this type and this code)" is one test on the pair: two negated tests would mean "neither".
      if (m.not && m.code !== undefined) return `${p} type . ${p} code != { ${m.type} . ${m.code} }`;
      return `${p} type ${ne(m.not)}${m.type}${m.code === undefined ? "" : ` ${p} code ${m.code}`}`;
    }
    case "mark":
      return `meta mark & ${hex(m.mask)} == ${hex(m.value)}`;
    case "conntrack":
      return `ct state ${m.states.map((s) => CT_STATE[s] ?? s.toLowerCase()).join(",")}`;
  }
}

export function formatNftAction(a: Action): string {
  switch (a.kind) {
    case "accept":
    case "drop":
    case "return":
      return a.kind;
    case "jump":
      return `jump ${a.chain}`;
    case "goto":
      return `goto ${a.chain}`;
    case "setMark":
      // iptables' --set-xmark: the bits of mask cleared, then value xor-ed in.
      return `meta mark set meta mark & ${hex(~a.mask)} ^ ${hex(a.value)}`;
    case "log": {
      const limit = a.limit ? `limit rate ${a.limit.perMinute}/minute burst ${a.limit.burst} packets ` : "";
      return `${limit}log prefix "${a.prefix.replace(/"/g, "'")}"`;
    }
    case "masquerade":
      return a.randomFully ? "masquerade fully-random" : "masquerade";
  }
}

/** The rule's statements in the rule's own order, the action last (nft evaluates left to right). */
export function formatNftRule(r: Rule, family: Family): string {
  return [...r.match.map((m) => formatNftMatch(m, family)), formatNftAction(r.action)].join(" ");
}

function hashOf(parts: string[]): string {
  return createHash("sha256").update(parts.join("\u0000")).digest("hex").slice(0, 16);
}

/** Each chain's hashed rules by the identity of its rules array (the render hands out an unchanged chain's rules as the same array). */
const hashedChains = new WeakMap<readonly Rule[], Map<string, NftRule[]>>();

/** A rule that only sends one exact interface on to a chain: an entry of a dispatch map. */
function dispatchEntry(r: Rule): { dir: "in" | "out"; name: string; verdict: string } | undefined {
  const [m, ...more] = r.match;
  if (!m || more.length || m.kind !== "iface" || m.prefix) return undefined;
  if (r.action.kind !== "goto" && r.action.kind !== "jump") return undefined;
  return { dir: m.dir, name: m.name, verdict: formatNftAction(r.action) };
}

/**
 * The statements of a chain. A run of rules at its head that each send one interface on
 * to its own chain (the endpoint dispatch: `-i slc… -g slc-fw-slc…`, one per local pod,
 * scanned in order by every packet) becomes one verdict map lookup:
 * `iifname vmap { "slc…" : goto slc-fw-slc…, … }`, the same decision in one step. Only
 * distinct names of one direction: a linear scan's first match is then the only match.
 */
function chainBodies(rules: readonly Rule[], family: Family): string[] {
  let n = 0;
  const names = new Set<string>();
  const head: Array<{ name: string; verdict: string }> = [];
  let dir: "in" | "out" | undefined;
  for (const r of rules) {
    const e = dispatchEntry(r);
    if (!e || (dir !== undefined && e.dir !== dir) || names.has(e.name)) break;
    dir = e.dir;
    names.add(e.name);
    head.push(e);
    n++;
  }
  const rest = rules.slice(n).map((r) => formatNftRule(r, family));
  if (n < 2 || dir === undefined) return rules.map((r) => formatNftRule(r, family));
  const map = head.map((e) => `"${e.name}" : ${e.verdict}`).join(", ");
  return [`${dir === "in" ? "iifname" : "oifname"} vmap { ${map} }`, ...rest];
}

export function nftRules(family: Family, chain: string, rules: readonly Rule[]): NftRule[] {
  const key = `${family}\u0000${chain}`;
  let byKey = hashedChains.get(rules);
  const hit = byKey?.get(key);
  if (hit) return hit;
  let prev = "";
  const out = chainBodies(rules, family).map((body, i) => {
    const hash = hashOf([chain, String(i), prev, body]);
    prev = hash;
    return { hash, text: `${body} comment "${NFT_COMMENT_PREFIX}${hash}"` };
  });
  if (!byKey) hashedChains.set(rules, (byKey = new Map()));
  byKey.set(key, out);
  return out;
}

// ---- sets ----

/** A member an nft set cannot hold: the set is refused (its rules fail closed), never half written. */
export class NftMemberError extends Error {}

export interface Span {
  start: bigint;
  end: bigint;
}

function spanOf(text: string, family: Family): Span & { len: number } {
  const c = parseCidr(text.includes("/") ? text : `${text}/${bitsOf(family)}`);
  if (c.family !== family) throw new NftMemberError(`"${text}" is not an IPv${family} member`);
  return { start: c.ip, end: c.ip + (1n << BigInt(bitsOf(family) - c.prefixLen)) - 1n, len: c.prefixLen };
}

/** A span as `nft list` prints an interval element: an address, a prefix, or a range (the netlink reader prints its intervals with it too). */
export function spanText(s: Span, family: Family): string {
  const size = s.end - s.start + 1n;
  if (size === 1n) return formatIp({ family, value: s.start });
  const bits = size.toString(2).length - 1;
  if (1n << BigInt(bits) === size && s.start % size === 0n) return formatCidr(cidr(family, s.start, bitsOf(family) - bits));
  return `${formatIp({ family, value: s.start })}-${formatIp({ family, value: s.end })}`;
}

/** Sorted, disjoint, non-adjacent spans covering the union of `spans`. */
function merged(spans: Span[]): Span[] {
  const sorted = [...spans].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end + 1n) {
      if (s.end > last.end) last.end = s.end;
    } else out.push({ ...s });
  }
  return out;
}

/**
 * What a hash:net set matches, as disjoint spans: an address is in it when the longest
 * member prefix containing it is not a `nomatch` one (the kernel's rule). Prefixes nest
 * or are disjoint, so cutting the space at every member's edges and asking each piece for
 * its longest covering prefix is exact.
 */
function netSpans(members: readonly string[], family: Family): Span[] {
  const entries = members.map((m) => {
    let parsed: { net: string; except: boolean };
    try {
      parsed = parseIpsetNetMember(m);
    } catch (err) {
      throw new NftMemberError((err as Error).message);
    }
    return { ...spanOf(parsed.net, family), match: !parsed.except };
  });
  if (entries.every((e) => e.match)) return merged(entries);
  const cuts = [...new Set(entries.flatMap((e) => [e.start, e.end + 1n]))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const pieces: Span[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const start = cuts[i] as bigint;
    const end = (cuts[i + 1] as bigint) - 1n;
    let best: (typeof entries)[number] | undefined;
    for (const e of entries) if (e.start <= start && e.end >= end && (!best || e.len > best.len)) best = e;
    if (best?.match) pieces.push({ start, end });
  }
  return merged(pieces);
}

const PROTOCOLS = new Set(["tcp", "udp", "sctp"]);

/** An address-and-port member as an element of the concatenation: address . protocol . port. */
function portElement(member: string, family: Family): string {
  const m = parseIpsetPortMember(member);
  if (!m || !PROTOCOLS.has(m.protocol)) throw new NftMemberError(`"${member}" is not an address with a tcp, udp or sctp port`);
  const addr = spanOf(m.ip, family);
  if (addr.start !== addr.end) throw new NftMemberError(`"${member}": one address, not a prefix`);
  return `${formatIp({ family, value: addr.start })} . ${m.protocol} . ${m.port}`;
}

const addrType = (f: Family): string => (f === 4 ? "ipv4_addr" : "ipv6_addr");

/** Set elements by the identity of the members array (the render keeps an unchanged set's members as the same array). */
const elementsMemo = new WeakMap<readonly string[], { family: Family; type: string; elements: string[] }>();

function setElements(spec: IpsetSpec): string[] {
  const hit = elementsMemo.get(spec.members);
  if (hit && hit.family === spec.family && hit.type === spec.type) return hit.elements;
  let elements: string[];
  if (spec.type === "hash:ip") {
    elements = [...new Set(spec.members.map((m) => {
      const s = spanOf(m, spec.family);
      if (s.start !== s.end) throw new NftMemberError(`"${m}": a hash:ip member is one address`);
      return formatIp({ family: spec.family, value: s.start });
    }))].sort();
  } else if (spec.type === "hash:net") {
    elements = netSpans(spec.members, spec.family).map((s) => spanText(s, spec.family));
  } else {
    elements = [...new Set(spec.members.map((m) => portElement(m, spec.family)))].sort();
  }
  elementsMemo.set(spec.members, { family: spec.family, type: spec.type, elements });
  return elements;
}

/** An ipset as an nft set; throws NftMemberError naming the member it cannot hold. */
export function nftSet(spec: IpsetSpec): NftSet {
  const a = addrType(spec.family);
  const type = spec.type === "hash:ip,port" ? `${a} . inet_proto . inet_service` : a;
  try {
    return { name: spec.name, type, interval: spec.type === "hash:net", elements: setElements(spec) };
  } catch (err) {
    // parseCidr's errors too: any member the set cannot hold refuses the set, named.
    if (err instanceof Error) throw new NftMemberError(`set ${spec.name}: ${err.message}`);
    throw err;
  }
}

// ---- the table ----

/**
 * A ruleset (some of its tables) and its sets as the desired nft table. The hooks become
 * base chains holding the jumps, in hook order.
 */
export function nftTable(ruleset: Ruleset, sets: readonly NftSet[]): NftTable {
  const chains: NftChain[] = [];
  const owner = new Map<string, TableName>();
  for (const t of ruleset.tables) {
    const jumps = new Map<string, Rule[]>();
    for (const h of t.hooks) {
      const name = baseChainName(t.table, h.builtin);
      jumps.set(name, [...(jumps.get(name) ?? []), { match: [], action: { kind: "jump", chain: h.target } }]);
    }
    for (const c of t.chains) {
      const other = owner.get(c.name);
      if (other !== undefined) throw new Error(`chain ${c.name} is in both the ${other} and the ${t.table} table: one nftables table cannot hold both`);
      owner.set(c.name, t.table);
      chains.push({ name: c.name, table: t.table, rules: nftRules(ruleset.family, c.name, c.rules) });
    }
    for (const h of t.hooks) {
      const name = baseChainName(t.table, h.builtin);
      const rules = jumps.get(name);
      if (!rules) continue;
      jumps.delete(name);
      chains.push({ name, table: t.table, base: baseChainOf(t.table, h.builtin), rules: nftRules(ruleset.family, name, rules) });
    }
  }
  return { family: ruleset.family, chains, sets: [...sets].sort((a, b) => a.name.localeCompare(b.name)) };
}

export const baseChainText = (b: NftBaseChain): string => `{ type ${b.type} hook ${b.hook} priority ${b.priority}; policy accept; }`;

export const setDeclText = (s: NftSet): string => `{ type ${s.type};${s.interval ? " flags interval;" : ""} }`;

/** The commands that create set `s` with its elements (`at`: the table, `ip sluice`). */
export function addSetCommands(at: string, s: NftSet): string[] {
  return [`add set ${at} ${s.name} ${setDeclText(s)}`, ...elementCommands("add", at, s.name, s.elements)];
}

/** `add element` / `delete element` commands, a bounded number of elements each (one huge line is slow to parse). */
export function elementCommands(verb: "add" | "delete", at: string, set: string, elements: readonly string[], per = 1000): string[] {
  const out: string[] = [];
  for (let i = 0; i < elements.length; i += per) out.push(`${verb} element ${at} ${set} { ${elements.slice(i, i + per).join(", ")} }`);
  return out;
}

/** The commands that create chain `c` (empty); its rules come once every chain exists, since rules jump between them. */
export const addChainCommand = (at: string, c: NftChain): string => `add chain ${at} ${c.name}${c.base ? ` ${baseChainText(c.base)}` : ""}`;

export const addRuleCommands = (at: string, c: NftChain): string[] => c.rules.map((r) => `add rule ${at} ${c.name} ${r.text}`);

/**
 * The whole table as one `nft -f` transaction onto a node with none of it (and a golden):
 * the table, its sets and elements, every chain, then every rule.
 */
export function formatNftTable(t: NftTable): string {
  const at = `${nftFamily(t.family)} ${NFT_TABLE}`;
  return [`add table ${at}`, ...t.sets.flatMap((s) => addSetCommands(at, s)), ...t.chains.map((c) => addChainCommand(at, c)), ...t.chains.flatMap((c) => addRuleCommands(at, c)), ""].join("\n");
}
