/**
 * Pure planning for the ipset driver: parse what `ipset list` shows, bring desired and
 * actual members to one canonical form (the form `ipset` itself prints), and produce one
 * `ipset -exist restore` input, or nothing when the kernel already matches, so a no-op
 * resync writes nothing at all.
 *
 * How a set with different members is brought up to date:
 * - full replacement (the usual case after a flush, a big change, or a set whose
 *   maxelem is too small): a temporary `slct-…` set is created and filled, then swapped
 *   with the live one in one kernel operation and destroyed. Rules reference sets by
 *   index and `swap` exchanges the contents behind the names, so every packet sees either
 *   the old or the new members, never a mix.
 * - small diffs (at most half as many changes as the set has members): `del`/`add` in
 *   place, which costs as many netlink entries as the diff instead of the whole set
 *   (a pod joining a selector must not rewrite a 10 000-member set), when no intermediate
 *   state can matter: every address must stay matched while it is in both the old and the
 *   new set (a Deny or an exclusion set must not let it through for a moment) and never be
 *   matched while it is in neither (an Allow set must not let it in). Single addresses
 *   (hash:ip, hash:ip,port) are independent elements, so any order holds. In a hash:net
 *   the most specific containing element decides, so a change to one prefix can shadow or
 *   uncover another: the diff goes in place only when no changed prefix contains another
 *   changed one (then each address sees at most one change, from its old to its new
 *   answer); otherwise the set is swapped.
 * A set that carries our name but another type or family cannot be swapped (the kernel
 * refuses); it is destroyed and created afresh when no rule references it, or reported as
 * blocked for the applier, which first takes the rules that use it out of play.
 *
 * One bad set never holds back the others: a desired set with a member we cannot write
 * (not an address of the family, a bad port...) is left out of the plan and reported in
 * `refused`, and the plan keeps one chunk of lines per set, so the driver can write set by
 * set to find one the kernel refuses (ipset restore stops at the first line it refuses).
 * The applier makes the rules that use a refused set fail closed.
 */
import { createHash } from "node:crypto";
import { type Family, bitsOf, cidr, formatIp, parseCidr, parseIp } from "../model/ip.js";
import { IPSET_NAME_MAX, type IpsetSpec, type IpsetType, isOwnedIpset } from "../render/ipsetSpec.js";

export const TEMP_PREFIX = "slct-";
export const DEFAULT_MAXELEM = 65536;

/** One owned set as the kernel reports it. */
export interface IpsetState {
  name: string;
  /** As printed: `hash:ip`, `hash:net`, … (possibly a type we never create). */
  type: string;
  /** `inet` / `inet6` from the header (empty when the header has none). */
  family: string;
  maxelem: number;
  /** Kernel references (iptables rules, list:set members); a referenced set cannot be destroyed. */
  references: number;
  /** Member lines as printed, e.g. `10.1.0.0/16 nomatch`. */
  members: string[];
  /**
   * The members are lines this planner wrote (canonical by construction), not lines read
   * from the kernel: they need no parsing to compare. Only the driver's record of what it
   * wrote carries it.
   */
  written?: boolean;
}

const familyName = (f: Family): string => (f === 4 ? "inet" : "inet6");

/** The family a set of ours belongs to: by name for live sets, by header for temporaries. */
export function ownedFamily(s: Pick<IpsetState, "name" | "family">): Family | undefined {
  if (s.name.startsWith("slc4-")) return 4;
  if (s.name.startsWith("slc6-")) return 6;
  if (s.name.startsWith(TEMP_PREFIX)) return s.family === "inet6" ? 6 : s.family === "inet" ? 4 : undefined;
  return undefined;
}

/**
 * Parses plain `ipset list` output (the one format that shows members and references
 * together). Sets whose names are not ours are skipped without looking at their members.
 */
export function parseIpsetList(text: string): Map<string, IpsetState> {
  const sets = new Map<string, IpsetState>();
  let cur: IpsetState | undefined;
  let inMembers = false;
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (line.startsWith("Name: ")) {
      const name = line.slice(6).trim();
      cur = isOwnedIpset(name) ? { name, type: "", family: "", maxelem: 0, references: 0, members: [] } : undefined;
      if (cur) sets.set(name, cur);
      inMembers = false;
      continue;
    }
    if (!cur) continue;
    if (inMembers) {
      if (line.trim() === "") inMembers = false;
      else cur.members.push(line.trim());
      continue;
    }
    if (line.startsWith("Type: ")) cur.type = line.slice(6).trim();
    else if (line.startsWith("References: ")) cur.references = Number(line.slice(12).trim()) || 0;
    else if (line.startsWith("Header: ")) {
      const words = line.slice(8).trim().split(/\s+/);
      const value = (k: string): string | undefined => {
        const i = words.indexOf(k);
        return i >= 0 ? words[i + 1] : undefined;
      };
      cur.family = value("family") ?? "";
      cur.maxelem = Number(value("maxelem") ?? DEFAULT_MAXELEM) || DEFAULT_MAXELEM;
    } else if (line.startsWith("Members:")) inMembers = true;
  }
  return sets;
}

/** A member split into the element (what identifies it in the set) and its nomatch flag. */
export interface CanonicalMember {
  key: string;
  nomatch: boolean;
}

const NOMATCH_SUFFIX = " nomatch";
export const memberText = (m: CanonicalMember): string => (m.nomatch ? `${m.key}${NOMATCH_SUFFIX}` : m.key);

function canonicalAddress(text: string, family: Family, what: string): string {
  let addr;
  try {
    addr = parseIp(text);
  } catch {
    throw new Error(`${what}: "${text}" is not an IP address`);
  }
  if (addr.family !== family) throw new Error(`${what}: "${text}" is not an IPv${family} address`);
  return formatIp(addr);
}

const PORT_PROTOS = new Set(["tcp", "udp", "sctp", "udplite"]);

/**
 * The canonical form(s) of one member, exactly as `ipset list` prints it:
 * - hash:ip: the address (a full-length `/32` or `/128` is dropped);
 * - hash:net: `net/len` with host bits cleared, a full-length prefix printed as a bare
 *   address (ipset prints `10.9.9.9`, not `10.9.9.9/32`), plus ` nomatch`; `/0`, which the
 *   kernel refuses, becomes its two halves (`0.0.0.0/1`, `128.0.0.0/1`), which match the
 *   same addresses, exceptions included;
 * - hash:ip,port: `addr,proto:port` (a bare port means tcp, as ipset reads it).
 * Throws on anything else, naming the set and the member.
 */
export function canonicalMembers(type: IpsetType, family: Family, member: string, setName = "ipset"): CanonicalMember[] {
  const what = `${setName} member "${member}"`;
  const words = member.trim().split(/\s+/);
  const nomatch = words.length === 2 && words[1] === "nomatch";
  if (words.length > 2 || (words.length === 2 && !nomatch) || (nomatch && type !== "hash:net")) {
    throw new Error(`${what}: only hash:net members may carry an option, and only "nomatch"`);
  }
  const body = words[0] ?? "";
  switch (type) {
    case "hash:ip": {
      const [addr, len, ...rest] = body.split("/");
      if (rest.length > 0 || (len !== undefined && Number(len) !== bitsOf(family))) throw new Error(`${what}: hash:ip takes single addresses`);
      return [{ key: canonicalAddress(addr ?? "", family, what), nomatch: false }];
    }
    case "hash:net": {
      const slash = body.indexOf("/");
      const addrText = slash < 0 ? body : body.slice(0, slash);
      canonicalAddress(addrText, family, what);
      let c;
      try {
        c = parseCidr(slash < 0 ? `${addrText}/${bitsOf(family)}` : body);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}`);
      }
      const halves = c.prefixLen === 0 ? [cidr(family, 0n, 1), cidr(family, 1n << BigInt(bitsOf(family) - 1), 1)] : [c];
      return halves.map((h) => {
        const a = formatIp({ family, value: h.ip });
        return { key: h.prefixLen === bitsOf(family) ? a : `${a}/${h.prefixLen}`, nomatch };
      });
    }
    case "hash:ip,port": {
      const comma = body.indexOf(",");
      if (comma < 0) throw new Error(`${what}: hash:ip,port members are addr,proto:port`);
      const addr = canonicalAddress(body.slice(0, comma), family, what);
      const pp = body.slice(comma + 1);
      const colon = pp.indexOf(":");
      const proto = colon < 0 ? "tcp" : pp.slice(0, colon).toLowerCase();
      const port = colon < 0 ? pp : pp.slice(colon + 1);
      if (!PORT_PROTOS.has(proto)) throw new Error(`${what}: protocol "${proto}" is not one of ${[...PORT_PROTOS].join(", ")}`);
      if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) throw new Error(`${what}: "${port}" is not a port number (0-65535; names and ranges are not accepted)`);
      return [{ key: `${addr},${proto}:${Number(port)}`, nomatch: false }];
    }
  }
}

type MemberParser = (spec: IpsetSpec, member: string) => readonly CanonicalMember[];
const parseMember: MemberParser = (spec, m) => canonicalMembers(spec.type, spec.family, m, spec.name);

/** Desired members keyed by element; throws on an element listed both with and without nomatch. */
function desiredMembers(spec: IpsetSpec, parse: MemberParser = parseMember): Map<string, CanonicalMember> {
  const out = new Map<string, CanonicalMember>();
  for (const m of spec.members) {
    for (const c of parse(spec, m)) {
      const prev = out.get(c.key);
      if (prev && prev.nomatch !== c.nomatch) throw new Error(`${spec.name}: "${c.key}" is listed both with and without nomatch`);
      out.set(c.key, c);
    }
  }
  return out;
}

interface CanonicalSet {
  want: Map<string, CanonicalMember>;
  /** The member lines as written and recorded, sorted (shared, never mutated). */
  lines: string[];
}

function canonicalSet(spec: IpsetSpec, parse: MemberParser = parseMember): CanonicalSet {
  const want = desiredMembers(spec, parse);
  return { want, lines: [...want.values()].map(memberText).sort() };
}

/**
 * The canonical members of each desired set as last computed, by set name. Parsing every
 * address of every set (BigInt arithmetic per member) is most of a plan's cost at scale,
 * and a change touches a few sets: a set whose member list is the same as last time (a
 * string compare per member) is not parsed again. A set that changed is parsed member by
 * member through a second memo, of each member's canonical form (one pod's address is a
 * member of many sets, and a relabel moves it between them), so that only members never
 * seen before are parsed. The driver owns one; the planner stays a function of its
 * arguments.
 */
export class CanonicalMemo {
  private readonly byName = new Map<string, { type: IpsetType; family: Family; input: readonly string[]; set: CanonicalSet }>();
  /** Canonical forms by type, family and member text (only members that parsed: a refusal is parsed again and names its set). */
  private members = new Map<string, readonly CanonicalMember[]>();
  /** One member's canonical forms, memoised (the kernel prints members as the planner writes them, so a read hits the same entries). */
  readonly parse: MemberParser = (spec, m) => {
    const key = `${spec.type}|${spec.family}|${m}`;
    let c = this.members.get(key);
    if (c === undefined) {
      c = canonicalMembers(spec.type, spec.family, m, spec.name);
      this.members.set(key, c);
    }
    return c;
  };

  get(spec: IpsetSpec): CanonicalSet {
    const hit = this.byName.get(spec.name);
    if (hit && hit.type === spec.type && hit.family === spec.family && sameList(hit.input, spec.members)) return hit.set;
    const set = canonicalSet(spec, this.parse);
    this.byName.set(spec.name, { type: spec.type, family: spec.family, input: spec.members, set });
    return set;
  }

  /**
   * Forgets the sets not in `names` (no longer desired), and the member memo when it has
   * grown past twice the members the kept sets hold (churned-away addresses): it is then
   * refilled from what is desired.
   */
  retain(names: ReadonlySet<string>): void {
    let kept = 0;
    for (const [name, hit] of this.byName) {
      if (!names.has(name)) this.byName.delete(name);
      else kept += hit.input.length;
    }
    if (this.members.size > 2 * kept + 1024) this.members = new Map();
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Actual members keyed by element, or undefined when a line is not one we could have written. */
function actualMembers(spec: IpsetSpec, state: IpsetState, parse: MemberParser = parseMember): Map<string, CanonicalMember> | undefined {
  const out = new Map<string, CanonicalMember>();
  if (state.written) {
    for (const m of state.members) {
      const nomatch = m.endsWith(NOMATCH_SUFFIX);
      const key = nomatch ? m.slice(0, -NOMATCH_SUFFIX.length) : m;
      out.set(key, { key, nomatch });
    }
    return out;
  }
  for (const m of state.members) {
    let cs: readonly CanonicalMember[];
    try {
      cs = parse(spec, m);
    } catch {
      return undefined;
    }
    if (cs.length !== 1) return undefined;
    const c = cs[0] as CanonicalMember;
    out.set(c.key, c);
  }
  return out;
}

/** The elements an in-place update would touch: added, deleted or with their nomatch flag flipped. */
function changedKeys(got: ReadonlyMap<string, CanonicalMember>, want: ReadonlyMap<string, CanonicalMember>): string[] {
  const out: string[] = [];
  for (const [key, m] of got) if (want.get(key)?.nomatch !== m.nomatch) out.push(key);
  for (const key of want.keys()) if (!got.has(key)) out.push(key);
  return out;
}

/**
 * Whether no prefix among these hash:net elements contains another. Prefixes either nest
 * or are disjoint, so sorted by network address (the shorter first) two of them overlap
 * exactly when one starts before the widest earlier one ends.
 */
function unnested(family: Family, keys: readonly string[]): boolean {
  const bits = bitsOf(family);
  const ranges = keys
    .map((k) => parseCidr(k.includes("/") ? k : `${k}/${bits}`))
    .map((c) => ({ start: c.ip, end: c.ip + (1n << BigInt(bits - c.prefixLen)) - 1n, len: c.prefixLen }))
    .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.len - b.len));
  let end = -1n;
  for (const r of ranges) {
    if (r.start <= end) return false;
    end = r.end;
  }
  return true;
}

/** Room for twice the members, never below ipset's default. */
export function maxelemFor(count: number): number {
  let m = DEFAULT_MAXELEM;
  while (m < count * 2) m *= 2;
  return m;
}

/** A temporary name for replacing `name`, distinct from every name in `taken`. */
export function tempName(name: string, taken: ReadonlySet<string>): string {
  for (let i = 0; ; i++) {
    const t = TEMP_PREFIX + createHash("sha256").update(i === 0 ? name : `${name}\u0000${i}`).digest("hex").slice(0, 20);
    if (!taken.has(t)) return t;
  }
}

/** Throws unless every desired set is of this family, named as ours, unique, and within the kernel's limits. */
export function validateDesired(family: Family, desired: readonly IpsetSpec[]): void {
  const seen = new Set<string>();
  const prefix = `slc${family}-`;
  for (const s of desired) {
    if (s.family !== family) throw new Error(`ipset ${s.name}: family ${s.family} given to the IPv${family} driver`);
    if (!s.name.startsWith(prefix)) throw new Error(`ipset ${s.name}: IPv${family} sets must be named ${prefix}…`);
    if (s.name.length > IPSET_NAME_MAX) throw new Error(`ipset ${s.name}: longer than ${IPSET_NAME_MAX} characters`);
    if (!/^[A-Za-z0-9_.:-]+$/.test(s.name)) throw new Error(`ipset ${s.name}: name has characters ipset restore cannot take`);
    if (seen.has(s.name)) throw new Error(`ipset ${s.name}: listed twice`);
    seen.add(s.name);
  }
}

/** A desired set that could not be written, and why (naming the member). */
export interface RefusedSet {
  name: string;
  reason: string;
}

/** The lines of one set (or, with `set` undefined, the removal of leftover temporaries). */
export interface PlanChunk {
  set: string | undefined;
  lines: string[];
}

export interface IpsetPlan {
  /** Input for `ipset -exist restore`, or undefined when nothing needs to change. */
  restore: string | undefined;
  /** The same lines, grouped by the set they write (in order). */
  chunks: PlanChunk[];
  /** Desired sets left out: a member cannot be written (the planner's check) or the kernel refused it (the driver's). */
  refused: RefusedSet[];
  created: string[];
  /** Replaced wholesale through a temporary set and `swap`. */
  swapped: string[];
  /** Updated with in-place `add`/`del`. */
  updated: string[];
  /** Wrong type or family and unreferenced: destroyed and created again. */
  recreated: string[];
  /** Wrong type or family but referenced by a rule: left alone, the caller must free it first. */
  blocked: string[];
  /** Owned sets destroyed (stale sets, leftover temporaries). */
  destroyed: string[];
  /** Owned sets that should go but are still referenced. */
  inUse: string[];
  /** Member lines written (adds and dels), for reports and benchmarks. */
  memberOps: number;
  /**
   * Every desired set this plan covers (all but the refused and the blocked) as it is once
   * the restore has gone through: what the driver records as written, so the next change
   * can be planned without reading the kernel. References are unknown there (0).
   */
  after: IpsetState[];
}

const emptyPlan = (): IpsetPlan => ({ restore: undefined, chunks: [], refused: [], created: [], swapped: [], updated: [], recreated: [], blocked: [], destroyed: [], inUse: [], memberOps: 0, after: [] });

function finish(plan: IpsetPlan, chunks: PlanChunk[]): IpsetPlan {
  plan.chunks = chunks.filter((c) => c.lines.length > 0);
  const lines = plan.chunks.flatMap((c) => c.lines);
  plan.restore = lines.length ? `${lines.join("\n")}\n` : undefined;
  return plan;
}

/** `ipset restore` input for some chunks. */
export const restoreText = (chunks: readonly PlanChunk[]): string => `${chunks.flatMap((c) => c.lines).join("\n")}\n`;

const createLine = (name: string, spec: IpsetSpec, count: number): string => `create ${name} ${spec.type} family ${familyName(spec.family)} maxelem ${maxelemFor(count)}`;

/**
 * Creates and updates the desired sets of one family (run before iptables, so every set
 * a rule names exists with its members). Leftover temporaries of this family are destroyed
 * first. Sets that are not desired are left for planRemoveStale.
 */
export function planPrepare(family: Family, desired: readonly IpsetSpec[], actual: ReadonlyMap<string, IpsetState>, memo?: CanonicalMemo): IpsetPlan {
  validateDesired(family, desired);
  const plan = emptyPlan();
  const leftovers: PlanChunk = { set: undefined, lines: [] };
  const chunks: PlanChunk[] = [leftovers];
  const taken = new Set(actual.keys());

  for (const s of [...actual.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!s.name.startsWith(TEMP_PREFIX) || ownedFamily(s) !== family) continue;
    if (s.references > 0) continue; // someone uses it; tempName() steers around it
    leftovers.lines.push(`destroy ${s.name}`);
    plan.destroyed.push(s.name);
    taken.delete(s.name);
  }

  for (const spec of [...desired].sort((a, b) => a.name.localeCompare(b.name))) {
    let canonical: CanonicalSet;
    try {
      canonical = memo ? memo.get(spec) : canonicalSet(spec);
    } catch (err) {
      plan.refused.push({ name: spec.name, reason: (err as Error).message });
      continue;
    }
    const { want, lines: wantLines } = canonical;
    const have = actual.get(spec.name);
    const written = (maxelem: number): void => {
      plan.after.push({ name: spec.name, type: spec.type, family: familyName(spec.family), maxelem, references: 0, members: wantLines, written: true });
    };
    // Recorded from these very lines (the memo hands out the same array while the set is unchanged): nothing to compare.
    if (have?.written && have.members === wantLines && have.type === spec.type && have.maxelem >= want.size) {
      written(have.maxelem);
      continue;
    }
    const lines: string[] = [];
    chunks.push({ set: spec.name, lines });
    const fill = (name: string): void => {
      for (const m of wantLines) lines.push(`add ${name} ${m}`);
      plan.memberOps += wantLines.length;
    };
    if (!have) {
      lines.push(createLine(spec.name, spec, want.size));
      fill(spec.name);
      plan.created.push(spec.name);
      written(maxelemFor(want.size));
      continue;
    }
    if (have.type !== spec.type || have.family !== familyName(spec.family)) {
      if (have.references > 0) {
        plan.blocked.push(spec.name);
        continue;
      }
      lines.push(`destroy ${spec.name}`, createLine(spec.name, spec, want.size));
      fill(spec.name);
      plan.recreated.push(spec.name);
      written(maxelemFor(want.size));
      continue;
    }
    const got = actualMembers(spec, have, memo?.parse);
    const shrink: string[] = [];
    const grow: string[] = [];
    if (got) {
      for (const [key, m] of got) {
        const w = want.get(key);
        if (!w) (m.nomatch ? grow : shrink).push(`del ${spec.name} ${key}`);
        else if (w.nomatch !== m.nomatch) (w.nomatch ? shrink : grow).push(`add ${spec.name} ${memberText(w)}`); // -exist flips the flag
      }
      for (const [key, w] of want) if (!got.has(key)) (w.nomatch ? shrink : grow).push(`add ${spec.name} ${memberText(w)}`);
    }
    const ops = shrink.length + grow.length;
    if (got && ops === 0 && have.maxelem >= want.size) {
      written(have.maxelem);
      continue;
    }
    if (got && ops * 2 <= want.size && have.maxelem >= want.size && (spec.type !== "hash:net" || unnested(spec.family, changedKeys(got, want)))) {
      lines.push(...shrink.sort(), ...grow.sort());
      plan.memberOps += ops;
      plan.updated.push(spec.name);
      written(have.maxelem);
      continue;
    }
    const tmp = tempName(spec.name, taken);
    taken.add(tmp);
    lines.push(createLine(tmp, spec, want.size));
    fill(tmp);
    lines.push(`swap ${tmp} ${spec.name}`, `destroy ${tmp}`);
    plan.swapped.push(spec.name);
    written(maxelemFor(want.size));
  }
  return finish(plan, chunks);
}

/**
 * Destroys this family's owned sets that are not desired (run after iptables, once no rule
 * of ours references them). Sets still referenced are reported in `inUse` and left alone.
 */
export function planRemoveStale(family: Family, desired: readonly IpsetSpec[], actual: ReadonlyMap<string, IpsetState>): IpsetPlan {
  const plan = emptyPlan();
  const wanted = new Set(desired.map((s) => s.name));
  const lines: string[] = [];
  for (const s of [...actual.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    if (ownedFamily(s) !== family || wanted.has(s.name)) continue;
    if (s.references > 0) {
      plan.inUse.push(s.name);
      continue;
    }
    lines.push(`destroy ${s.name}`);
    plan.destroyed.push(s.name);
  }
  return finish(plan, [{ set: undefined, lines }]);
}

/**
 * This family's owned sets as they are once `plan` has gone through, starting from
 * `before` (what the kernel held, read or recorded): destroyed sets gone, every set the
 * plan covers as it wrote it. Pure: the driver's record of what it wrote. References are
 * not recorded (0): they change with every rule change, and a destroy the kernel refuses
 * sends the driver back to reading.
 */
export function stateAfter(family: Family, before: ReadonlyMap<string, IpsetState>, plan: Pick<IpsetPlan, "destroyed" | "after">): Map<string, IpsetState> {
  const out = new Map<string, IpsetState>();
  for (const [name, s] of before) if (ownedFamily(s) === family) out.set(name, s.references ? { ...s, references: 0 } : s);
  for (const name of plan.destroyed) out.delete(name);
  for (const s of plan.after) out.set(s.name, s);
  return out;
}

/**
 * What differs between the sets a driver recorded as written and what it read back (this
 * family's owned sets): missing, unexpected, and changed (type, family or members). The
 * record's member lines are the canonical form `ipset list` prints, so equal sets compare
 * equal line for line.
 */
export function ipsetDrift(family: Family, recorded: ReadonlyMap<string, IpsetState>, read: ReadonlyMap<string, IpsetState>): { missing: string[]; unexpected: string[]; changed: string[] } {
  const missing: string[] = [];
  const unexpected: string[] = [];
  const changed: string[] = [];
  for (const [name, r] of recorded) {
    const k = read.get(name);
    if (!k) missing.push(name);
    else if (k.type !== r.type || k.family !== r.family || !sameMembers(k.members, r.members)) changed.push(name);
  }
  for (const [name, k] of read) if (ownedFamily(k) === family && !recorded.has(name)) unexpected.push(name);
  return { missing: missing.sort(), unexpected: unexpected.sort(), changed: changed.sort() };
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((m) => set.has(m));
}
