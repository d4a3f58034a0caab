/**
 * Our nft table read straight from the kernel over nfnetlink, without the nft binary:
 * `nft -j list table` spends about a second turning 18,000 rules into expression trees and
 * JSON, while the planner needs, per rule, only its chain, our comment and any jump or goto
 * target; per chain its hook; per set its type and elements. Dumped and decoded here, the
 * same table takes a fraction of that (the kernel's own dump is most of what is left).
 *
 * And the ruleset generation: every committed nf_tables transaction on the host (ours,
 * kube-proxy's, iptables-nft's) bumps it, so when it is still the one our last write left,
 * nothing anywhere has changed and a resync can trust the record without reading anything.
 *
 * A netlink socket works in the network namespace of the process that opens it: the agent
 * runs inside its node's namespace and uses this; the tests' drivers, which address other
 * namespaces from outside, read with `nft -j` (src/dataplane/nftPlan.ts parseNftTable),
 * and a test checks that both readers agree.
 */
import { type NetlinkSocket, createNetlink } from "netlink";
import { type Family, formatIp } from "../model/ip.js";
import type { NftBaseChain, NftChain, NftSet, NftTable } from "../render/nftFormat.js";
import { NFT_COMMENT_PREFIX, spanText } from "../render/nftFormat.js";
import { assignOwners } from "./nftPlan.js";

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const MSG = { GETTABLE: 1, GETCHAIN: 4, GETRULE: 7, GETSET: 10, GETSETELEM: 13, GETGEN: 16 } as const;
const NLM_F_DUMP = 0x300;
const NFPROTO = { 4: 2, 6: 10 } as const;
const HOOKS = ["prerouting", "input", "forward", "output", "postrouting"] as const;
const NFT_JUMP = -3;
const NFT_GOTO = -4;
const NFT_SET_ANONYMOUS = 0x1;
const NFT_SET_INTERVAL = 0x4;
const NFT_SET_MAP = 0x8;
const NFT_SET_ELEM_INTERVAL_END = 0x1;
/** nft's datatype numbers (its userspace encodes concatenations as 6-bit groups of them). */
const DATATYPES: Record<number, string> = { 7: "ipv4_addr", 8: "ipv6_addr", 12: "inet_proto", 13: "inet_service" };
const PROTOCOLS: Record<number, string> = { 6: "tcp", 17: "udp", 132: "sctp" };

/** Top-level attributes of a netlink payload, by type (nested flag masked off). */
function attrs(buf: Buffer, from = 0): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let off = from;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break;
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    const data = buf.subarray(off + 4, off + len);
    const list = out.get(type);
    if (list) list.push(data);
    else out.set(type, [data]);
    off += (len + 3) & ~3;
  }
  return out;
}

const first = (m: Map<number, Buffer[]>, t: number): Buffer | undefined => m.get(t)?.[0];
const cstr = (b: Buffer | undefined): string => (b ? cstrAt(b, 0, b.length) : "");

function attr(type: number, data: Buffer): Buffer {
  const len = 4 + data.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  data.copy(b, 4);
  return b;
}
const strAttr = (type: number, s: string): Buffer => attr(type, Buffer.from(`${s}\0`));

/** A NUL-terminated string at buf[start..end). */
function cstrAt(buf: Buffer, start: number, end: number): string {
  const nul = buf.indexOf(0, start);
  return buf.toString("utf8", start, nul >= 0 && nul < end ? nul : end);
}

/** Our comment in a rule's userdata at buf[start..end) (TLV: type 0 = comment, NUL-terminated). */
function commentAt(buf: Buffer, start: number, end: number): string {
  for (let off = start; off + 2 <= end; ) {
    const type = buf[off] as number;
    const len = buf[off + 1] as number;
    if (type === 0) return cstrAt(buf, off + 2, Math.min(end, off + 2 + len));
    off += 2 + len;
  }
  return "";
}

/**
 * The NFTA_VERDICT_CODE attributes of a jump and a goto (length 8, type 1, the code big
 * endian): in a rule's expressions only an immediate verdict carries them, and its
 * NFTA_VERDICT_CHAIN follows. Found by a byte search: decoding every expression of
 * 18,000 rules to find a few verdicts was most of a read.
 */
const VERDICTS = [NFT_JUMP, NFT_GOTO].map((code) => {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(8, 0);
  b.writeUInt16LE(1, 2);
  b.writeInt32BE(code, 4);
  return b;
});

/** The anonymous maps (`__map<n>`) a rule's expressions look up, by name. */
const MAP_PREFIX = Buffer.from("__map");

function mapsAt(buf: Buffer, start: number, end: number): string[] {
  const out: string[] = [];
  for (let at = buf.indexOf(MAP_PREFIX, start); at >= 0 && at < end; at = buf.indexOf(MAP_PREFIX, at + MAP_PREFIX.length)) out.push(cstrAt(buf, at, end));
  return out;
}

function targetsAt(buf: Buffer, start: number, end: number, out: string[]): void {
  for (const pattern of VERDICTS) {
    for (let at = buf.indexOf(pattern, start); at >= 0 && at < end; at = buf.indexOf(pattern, at + 8)) {
      const next = at + 8;
      if (next + 4 > end || (buf.readUInt16LE(next + 2) & 0x3fff) !== 2) continue;
      out.push(cstrAt(buf, next + 4, next + buf.readUInt16LE(next)));
    }
  }
}

function typeName(keyType: number): string {
  const parts: number[] = [];
  for (let t = keyType; t > 0; t = Math.floor(t / 64)) parts.unshift(t % 64);
  return parts.map((p) => DATATYPES[p] ?? `type${p}`).join(" . ");
}

function bigOf(b: Buffer): bigint {
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  return v;
}

/** An element key as the formatter writes it: an address, or address . protocol . port. */
function keyText(key: Buffer, family: Family, concat: boolean): string {
  const alen = family === 4 ? 4 : 16;
  const addr = formatIp({ family, value: bigOf(key.subarray(0, alen)) });
  if (!concat) return addr;
  // Each field of a concatenation takes a multiple of 4 bytes.
  const proto = key[alen] as number;
  const port = key.readUInt16BE(alen + 4);
  return `${addr} . ${PROTOCOLS[proto] ?? String(proto)} . ${port}`;
}

/**
 * The generations our own writes produced, shared by the dataplanes of one agent (one per
 * family): a record stays true across another family's write, since that write touched
 * only its own table, so only generations none of ours made mean "someone else committed".
 */
export class NftGenerations {
  private readonly ours = new Set<number>();

  note(generation: number): void {
    this.ours.add(generation);
    if (this.ours.size > 4096) this.ours.delete(this.ours.values().next().value as number);
  }

  /** Whether every generation after `from` up to `to` is one of ours (none: `to` is `from`, nothing committed). */
  onlyOursBetween(from: number, to: number): boolean {
    if (to < from || to - from > this.ours.size) return false;
    for (let g = from + 1; g <= to; g++) if (!this.ours.has(g)) return false;
    return true;
  }
}

export class NftNetlink {
  private readonly sock: NetlinkSocket;

  constructor() {
    this.sock = createNetlink(NETLINK_NETFILTER, { recvBufferSize: 8 << 20, sendBufferSize: 1 << 20 });
  }

  close(): void {
    this.sock.close();
  }

  /** The replies of one request (a dump unless `single`), nf_tables messages only. */
  private async messages(msg: number, family: Family | 0, payload: Buffer[], single = false): Promise<Array<{ data: Buffer }>> {
    const nfgen = Buffer.from([family === 0 ? 0 : NFPROTO[family], 0, 0, 0]);
    const [msgs] = await this.sock.request((NFNL_SUBSYS_NFTABLES << 8) | msg, [nfgen, ...payload], { flags: single ? 0 : NLM_F_DUMP, timeout: 30_000 });
    return msgs.filter((m) => m.type >> 8 === NFNL_SUBSYS_NFTABLES);
  }

  private async dump(msg: number, family: Family | 0, payload: Buffer[], single = false): Promise<Array<Map<number, Buffer[]>>> {
    return (await this.messages(msg, family, payload, single)).map((m) => attrs(m.data, 4));
  }

  /** The ruleset generation: it changes with every committed nf_tables transaction on the host. */
  async generation(): Promise<number> {
    const [g] = await this.dump(MSG.GETGEN, 0, [], true);
    const id = g ? first(g, 1) : undefined;
    if (!id) throw new Error("nfnetlink: no ruleset generation in the reply");
    return id.readUInt32BE(0);
  }

  /** Table `name` of `family` in the planner's terms; undefined when it does not exist. */
  async readTable(family: Family, name: string): Promise<NftTable | undefined> {
    const table = strAttr(1, name);
    try {
      await this.messages(MSG.GETTABLE, family, [table], true);
    } catch (err) {
      if (/ENOENT/.test((err as Error).message)) return undefined;
      throw err;
    }
    const chainMsgs = await this.dump(MSG.GETCHAIN, family, [table]);
    const chains = new Map<string, NftChain>();
    for (const c of chainMsgs) {
      if (cstr(first(c, 1)) !== name) continue;
      const chainName = cstr(first(c, 3));
      const hook = first(c, 4);
      let base: NftBaseChain | undefined;
      if (hook) {
        const h = attrs(hook);
        const num = first(h, 1)?.readUInt32BE(0) ?? -1;
        const prio = first(h, 2)?.readInt32BE(0) ?? 0;
        const policy = first(c, 5)?.readUInt32BE(0);
        const hookName = HOOKS[num];
        if (hookName) base = { type: cstr(first(c, 7)) === "nat" ? "nat" : "filter", hook: hookName, priority: policy === 1 ? prio : Number.NaN };
      }
      chains.set(chainName, { name: chainName, table: undefined, ...(base ? { base } : {}), rules: [] });
    }
    // Sets first: a verdict map a rule uses is an anonymous set whose elements name the chains it sends to.
    const sets: NftSet[] = [];
    const mapTargets = new Map<string, string[]>();
    for (const s of await this.dump(MSG.GETSET, family, [table])) {
      const setName = cstr(first(s, 2));
      const flags = first(s, 3)?.readUInt32BE(0) ?? 0;
      if (flags & NFT_SET_ANONYMOUS) {
        if (flags & NFT_SET_MAP) mapTargets.set(setName, await this.verdictTargets(family, name, setName));
        continue;
      }
      const type = typeName(first(s, 4)?.readUInt32BE(0) ?? 0);
      const interval = (flags & NFT_SET_INTERVAL) !== 0;
      sets.push({ name: setName, type, interval, elements: await this.elements(family, name, setName, interval, type.includes(" . ")) });
    }
    const targets = new Map<string, string[]>();
    for (const m of await this.messages(MSG.GETRULE, family, [table])) {
      // Walked by offset, not decoded into attributes: this is the one large dump.
      const buf = m.data;
      let chainName = "";
      let comment = "";
      const jumps: string[] = [];
      for (let off = 4; off + 4 <= buf.length; ) {
        const len = buf.readUInt16LE(off);
        if (len < 4 || off + len > buf.length) break;
        const type = buf.readUInt16LE(off + 2) & 0x3fff;
        if (type === 2) chainName = cstrAt(buf, off + 4, off + len);
        else if (type === 4) {
          targetsAt(buf, off + 4, off + len, jumps);
          if (mapTargets.size) for (const map of mapsAt(buf, off + 4, off + len)) jumps.push(...(mapTargets.get(map) ?? []));
        } else if (type === 7) comment = commentAt(buf, off + 4, off + len);
        off += (len + 3) & ~3;
      }
      const c = chains.get(chainName);
      if (!c) continue;
      c.rules.push({ hash: comment.startsWith(NFT_COMMENT_PREFIX) ? comment.slice(NFT_COMMENT_PREFIX.length) : "", text: "" });
      if (jumps.length) targets.set(chainName, [...(targets.get(chainName) ?? []), ...jumps]);
    }
    assignOwners(chains, targets);
    return { family, chains: [...chains.values()], sets: sets.sort((a, b) => a.name.localeCompare(b.name)) };
  }

  /** One chain's rules (our comment hashes) and the chains they jump or go to; undefined when the chain does not exist. */
  async chainRules(family: Family, table: string, chain: string): Promise<{ hashes: string[]; targets: string[] } | undefined> {
    try {
      // A rule dump of a missing chain is empty, not an error: ask for the chain itself first.
      await this.messages(MSG.GETCHAIN, family, [strAttr(1, table), strAttr(3, chain)], true);
    } catch (err) {
      if (/ENOENT/.test((err as Error).message)) return undefined;
      throw err;
    }
    const msgs = await this.messages(MSG.GETRULE, family, [strAttr(1, table), strAttr(2, chain)]);
    const hashes: string[] = [];
    const targets: string[] = [];
    for (const m of msgs) {
      const r = attrs(m.data, 4);
      if (cstr(first(r, 2)) !== chain) continue;
      const udata = first(r, 7);
      const comment = udata ? commentAt(udata, 0, udata.length) : "";
      hashes.push(comment.startsWith(NFT_COMMENT_PREFIX) ? comment.slice(NFT_COMMENT_PREFIX.length) : "");
      const exprs = first(r, 4);
      if (exprs) targetsAt(exprs, 0, exprs.length, targets);
    }
    return { hashes, targets };
  }

  /** One set's elements as the formatter writes them; undefined when the set does not exist. */
  async setElements(family: Family, table: string, set: string): Promise<string[] | undefined> {
    let info: Array<Map<number, Buffer[]>>;
    try {
      info = await this.dump(MSG.GETSET, family, [strAttr(1, table), strAttr(2, set)], true);
    } catch (err) {
      if (/ENOENT/.test((err as Error).message)) return undefined;
      throw err;
    }
    const s = info[0];
    if (!s) return undefined;
    const flags = first(s, 3)?.readUInt32BE(0) ?? 0;
    const type = typeName(first(s, 4)?.readUInt32BE(0) ?? 0);
    return this.elements(family, table, set, (flags & NFT_SET_INTERVAL) !== 0, type.includes(" . "));
  }

  /** The chains a verdict map's elements jump or go to. */
  private async verdictTargets(family: Family, table: string, set: string): Promise<string[]> {
    const out: string[] = [];
    for (const m of await this.messages(MSG.GETSETELEM, family, [strAttr(1, table), strAttr(2, set)])) targetsAt(m.data, 4, m.data.length, out);
    return out;
  }

  private async elements(family: Family, table: string, set: string, interval: boolean, concat: boolean): Promise<string[]> {
    const keys: Array<{ key: Buffer; end: boolean }> = [];
    for (const m of await this.dump(MSG.GETSETELEM, family, [strAttr(1, table), strAttr(2, set)])) {
      for (const list of m.get(3) ?? []) {
        for (const elem of attrs(list).get(1) ?? []) {
          const e = attrs(elem);
          const key = first(e, 1);
          const value = key ? first(attrs(key), 1) : undefined;
          if (!value) continue;
          keys.push({ key: value, end: ((first(e, 3)?.readUInt32BE(0) ?? 0) & NFT_SET_ELEM_INTERVAL_END) !== 0 });
        }
      }
    }
    if (!interval) return keys.map((k) => keyText(k.key, family, concat)).sort();
    // An interval is a start element and an end element one past its last address (none when it reaches the top).
    const points = keys.map((k) => ({ at: bigOf(k.key), end: k.end })).sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.end === b.end ? 0 : a.end ? -1 : 1));
    const top = (1n << BigInt(family === 4 ? 32 : 128)) - 1n;
    const out: string[] = [];
    for (let i = 0; i < points.length; i++) {
      const p = points[i] as { at: bigint; end: boolean };
      if (p.end) continue;
      const next = points[i + 1];
      const last = next?.end ? next.at - 1n : top;
      out.push(spanText({ start: p.at, end: last }, family));
      if (next?.end) i++;
    }
    return out.sort();
  }
}
