/**
 * Structured rules (rules.ts) -> iptables and ipset text: the one module under src/render
 * and src/policy that knows their syntax (test/unit/iptablesFormat.test.ts checks that).
 *
 * A rule is printed as iptables-save prints it, so that what we write and what the kernel
 * gives back read the same (the kernel suites compare them): the address, interface and
 * protocol tests first, in the order `-s -d -i -o -p`, then the match modules in the
 * rule's order (set, tcp/udp/sctp, icmp/icmp6, mark, conntrack), then the target. One
 * port match per rule: iptables-nft merges a second one into the first, so ports of one
 * protocol are one Match. Which protocol test a port or ICMP match needs is the rule's
 * business (a `protocol` match): the formatter prints what it is given.
 */
import { type Action, type Match, type PortRange, type Rule } from "./rules.js";
import type { IpsetSpec } from "./ipsetSpec.js";
import type { HookSpec, RenderedTable, Ruleset, RulesetSpec, TableSpec, TextTableSpec } from "./ruleset.js";

const not = (neg: boolean | undefined): string => (neg ? "! " : "");
const hex = (n: number): string => `0x${n.toString(16)}`;
const bits = (value: number, mask: number): string => `${hex(value)}/${hex(mask)}`;
const portTest = (flag: "sport" | "dport", p: PortRange): string => `${not(p.not)}--${flag} ${p.from === p.to ? `${p.from}` : `${p.from}:${p.to}`}`;

/** Our rules' comment is this plus the rule's hash (ruleset.ts renderTable); the planner finds our rules by it. */
export const HASH_COMMENT_PREFIX = "sluice:";

/** Where iptables-save prints a match: the fixed tests in this order, every module after them. */
function rank(m: Match): number {
  if (m.kind === "addr") return m.dir === "src" ? 0 : 1;
  if (m.kind === "iface") return m.dir === "in" ? 2 : 3;
  if (m.kind === "protocol") return 4;
  return 5;
}

export function formatMatch(m: Match): string {
  switch (m.kind) {
    case "iface":
      return `-${m.dir === "in" ? "i" : "o"} ${m.name}${m.prefix ? "+" : ""}`;
    case "addr":
      return `${not(m.not)}-${m.dir === "src" ? "s" : "d"} ${m.cidr}`;
    case "protocol":
      return `-p ${m.protocol}`;
    case "set":
      return `-m set ${not(m.not)}--match-set ${m.set} ${m.dirs.join(",")}`;
    case "ports": {
      const tests = [...(m.src ? [portTest("sport", m.src)] : []), ...(m.dst ? [portTest("dport", m.dst)] : [])];
      return [`-m ${m.protocol}`, ...tests].join(" ");
    }
    case "icmp": {
      const t = m.code === undefined ? `${m.type}` : `${m.type}/${m.code}`;
      return m.family === 4 ? `-m icmp ${not(m.not)}--icmp-type ${t}` : `-m icmp6 ${not(m.not)}--icmpv6-type ${t}`;
    }
    case "mark":
      return `-m mark --mark ${bits(m.value, m.mask)}`;
    case "conntrack":
      return `-m conntrack --ctstate ${m.states.join(",")}`;
  }
}

export function formatAction(a: Action): string {
  switch (a.kind) {
    case "accept":
      return "-j ACCEPT";
    case "drop":
      return "-j DROP";
    case "return":
      return "-j RETURN";
    case "jump":
      return `-j ${a.chain}`;
    case "goto":
      return `-g ${a.chain}`;
    case "setMark":
      return `-j MARK --set-xmark ${bits(a.value, a.mask)}`;
    case "log": {
      const limit = a.limit ? `-m limit --limit ${a.limit.perMinute}/min --limit-burst ${a.limit.burst} ` : "";
      return `${limit}-j LOG --log-prefix "${a.prefix}"`;
    }
    case "masquerade":
      return a.randomFully ? "-j MASQUERADE --random-fully" : "-j MASQUERADE";
  }
}

/** The rule body for `-A <chain> <body>` (without our hash comment). */
export function formatRule(r: Rule): string {
  const matches = r.match.map((m, i) => ({ m, i })).sort((a, b) => rank(a.m) - rank(b.m) || a.i - b.i);
  return [...matches.map(({ m }) => formatMatch(m)), formatAction(r.action)].join(" ");
}

/**
 * Each rules list's text, by identity: the render memo and the render thread's mirror hand
 * out an unchanged chain's rules as the same array, so an apply formats (and the driver
 * hashes, renderTable) only the chains that changed. A cache of a pure function.
 */
const formatted = new WeakMap<readonly Rule[], string[]>();

function formatRules(rules: readonly Rule[]): string[] {
  let text = formatted.get(rules);
  if (!text) {
    text = rules.map(formatRule);
    formatted.set(rules, text);
  }
  return text;
}

export function formatTable(t: TableSpec): TextTableSpec {
  return { table: t.table, chains: t.chains.map((c) => ({ name: c.name, rules: formatRules(c.rules) })), hooks: t.hooks };
}

/** A structured ruleset as the iptables driver takes it. */
export function formatRuleset(r: Ruleset): RulesetSpec {
  return { family: r.family, tables: r.tables.map(formatTable) };
}

/** The rule of a hook: the jump from the built-in chain into ours. */
export const hookText = (target: HookSpec["target"]): string => `-j ${target}`;

/** Puts the hash comment right before the target (`-j`/`-g`), where iptables-save prints it. */
export function withComment(body: string, hash: string): string {
  const comment = `-m comment --comment "${HASH_COMMENT_PREFIX}${hash}"`;
  const m = /(^|\s)(-[jg] \S.*)$/.exec(body);
  if (!m) return `${body} ${comment}`.trim();
  const before = body.slice(0, m.index).trim();
  return `${before ? `${before} ` : ""}${comment} ${m[2]}`;
}

/**
 * The restore input for a table onto a node that has none of it: the same text as the
 * planner's `planTable(table, undefined).restore` (src/dataplane/iptablesPlan.ts), kept
 * here because render code must not import the dataplane.
 */
export function formatFreshRestore(t: RenderedTable): string {
  const lines = [`*${t.table}`];
  for (const c of t.chains) lines.push(`:${c.name} - [0:0]`);
  for (const c of t.chains) for (const r of c.rules) lines.push(`-A ${c.name} ${r.body}`);
  for (const builtin of [...new Set(t.hooks.map((h) => h.builtin))].sort()) {
    for (const h of t.hooks.filter((x) => x.builtin === builtin).reverse()) lines.push(`-I ${builtin} 1 ${h.rule.body}`);
  }
  lines.push("COMMIT", "");
  return lines.join("\n");
}

/** `create <name> <type> family inet|inet6` then `add <name> <member>` lines, in spec order. */
export function formatIpsets(sets: readonly IpsetSpec[]): string {
  const lines: string[] = [];
  for (const s of sets) {
    lines.push(`create ${s.name} ${s.type} family ${s.family === 4 ? "inet" : "inet6"}`);
    for (const m of s.members) lines.push(`add ${s.name} ${m}`);
  }
  return lines.length ? `${lines.join("\n")}\n` : "";
}

/** A hash:net member: `net` inside the set, or (`except`) an exception carved out of a wider member. */
export const ipsetNetMember = (net: string, except = false): string => (except ? `${net} nomatch` : net);

/** A hash:ip,port member: the address with a port of one protocol. */
export const ipsetPortMember = (ip: string, protocol: string, port: number): string => `${ip},${protocol}:${port}`;

/** A hash:net member read back: the prefix, and whether it is an exception (`nomatch`). */
export function parseIpsetNetMember(member: string): { net: string; except: boolean } {
  const [net, flag, ...rest] = member.trim().split(/\s+/);
  if (!net || rest.length || (flag !== undefined && flag !== "nomatch")) throw new Error(`"${member}" is not <prefix> or <prefix> nomatch`);
  return { net, except: flag === "nomatch" };
}

/** A hash:ip,port member read back: `10.244.1.5,tcp:80` -> address, protocol, port (undefined: not that shape). */
export function parseIpsetPortMember(member: string): { ip: string; protocol: string; port: number } | undefined {
  const comma = member.lastIndexOf(",");
  if (comma < 0) return undefined;
  const [protocol, port, ...rest] = member.slice(comma + 1).split(":");
  const n = Number(port);
  if (!protocol || rest.length || port === undefined || !/^\d+$/.test(port) || n > 65535) return undefined;
  return { ip: member.slice(0, comma), protocol, port: n };
}
