/**
 * IPv4/IPv6 addresses and prefixes as plain values. Addresses are held as bigint so
 * that one set of arithmetic serves both families; everything here is pure.
 */
import { isIPv4, isIPv6 } from "node:net";

export type Family = 4 | 6;

export interface IpAddr {
  readonly family: Family;
  readonly value: bigint;
}

export interface Cidr {
  readonly family: Family;
  /** Network address (host bits are always zero). */
  readonly ip: bigint;
  readonly prefixLen: number;
}

export const bitsOf = (family: Family): number => (family === 4 ? 32 : 128);

export function parseIp(text: string): IpAddr {
  const s = text.trim();
  if (isIPv4(s)) {
    const v = s.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
    return { family: 4, value: v };
  }
  if (isIPv6(s)) return { family: 6, value: parseIpv6(s) };
  throw new Error(`"${text}" is not an IP address`);
}

function parseIpv6(s: string): bigint {
  let text = s;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = parseIp(v4[1] as string).value;
    text = text.slice(0, -(v4[1] as string).length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const headParts = head ? head.split(":").filter((p) => p !== "") : [];
  const tailParts = tail ? tail.split(":").filter((p) => p !== "") : [];
  const missing = 8 - headParts.length - tailParts.length;
  const parts = tail === undefined ? headParts : [...headParts, ...Array<string>(missing).fill("0"), ...tailParts];
  return parts.reduce((acc, p) => (acc << 16n) | BigInt(parseInt(p, 16)), 0n);
}

export function formatIp(addr: IpAddr): string {
  if (addr.family === 4) {
    const v = addr.value;
    return [24n, 16n, 8n, 0n].map((s) => ((v >> s) & 0xffn).toString()).join(".");
  }
  const hextets: number[] = [];
  for (let i = 7; i >= 0; i--) hextets.push(Number((addr.value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (length >= 2) of zero hextets.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (hextets[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && hextets[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = hextets.map((h) => h.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

export function ipToBytes(addr: IpAddr): Buffer {
  const len = addr.family === 4 ? 4 : 16;
  const buf = Buffer.alloc(len);
  let v = addr.value;
  for (let i = len - 1; i >= 0; i--) {
    buf[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return buf;
}

export function ipFromBytes(bytes: Uint8Array): IpAddr {
  if (bytes.length !== 4 && bytes.length !== 16) throw new Error(`address of ${bytes.length} bytes`);
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return { family: bytes.length === 4 ? 4 : 6, value: v };
}

function hostMask(family: Family, prefixLen: number): bigint {
  return (1n << BigInt(bitsOf(family) - prefixLen)) - 1n;
}

/** Parses "a.b.c.d/n" (or IPv6). `strict` refuses host bits set; otherwise they are cleared. */
export function parseCidr(text: string, strict = false): Cidr {
  const slash = text.indexOf("/");
  if (slash < 0) throw new Error(`"${text}" is not a CIDR (expected address/prefix-length)`);
  const addr = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) throw new Error(`"${text}" has an invalid prefix length`);
  const prefixLen = Number(lenText);
  if (prefixLen > bitsOf(addr.family)) throw new Error(`"${text}" has a prefix length over ${bitsOf(addr.family)}`);
  const mask = hostMask(addr.family, prefixLen);
  if (strict && (addr.value & mask) !== 0n) throw new Error(`"${text}" has host bits set`);
  return { family: addr.family, ip: addr.value & ~mask, prefixLen };
}

export function cidr(family: Family, ip: bigint, prefixLen: number): Cidr {
  return { family, ip: ip & ~hostMask(family, prefixLen), prefixLen };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.ip })}/${c.prefixLen}`;
}

export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(bitsOf(c.family) - c.prefixLen);
}

/** The first address after the prefix (flannel's `Next()`), used for SubnetMax defaults. */
export function cidrEnd(c: Cidr): bigint {
  return c.ip + cidrSize(c);
}

export function cidrContainsIp(c: Cidr, addr: IpAddr): boolean {
  return c.family === addr.family && (addr.value & ~hostMask(c.family, c.prefixLen)) === c.ip;
}

export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.prefixLen >= outer.prefixLen && cidrContainsIp(outer, { family: inner.family, value: inner.ip });
}

export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

export function cidrEquals(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.ip === b.ip && a.prefixLen === b.prefixLen;
}

export function ipEquals(a: IpAddr, b: IpAddr): boolean {
  return a.family === b.family && a.value === b.value;
}

/** The address `offset` places into the prefix (offset 1 = first host address). */
export function cidrHost(c: Cidr, offset: bigint): IpAddr {
  return { family: c.family, value: c.ip + offset };
}

export function isLinkLocal(addr: IpAddr): boolean {
  if (addr.family === 4) return cidrContainsIp(parseCidr("169.254.0.0/16"), addr);
  return cidrContainsIp(parseCidr("fe80::/10"), addr);
}

const LOOPBACK4 = parseCidr("127.0.0.0/8");
const MULTICAST4 = parseCidr("224.0.0.0/4");
const MULTICAST6 = parseCidr("ff00::/8");

/**
 * Why `addr` cannot be a host's own address (a pod's, a node's, a peer's underlay address),
 * or undefined when it can. The unspecified address is what the kernel's hash:ip sets
 * refuse outright; loopback, multicast and the IPv4 limited broadcast never source
 * traffic that crosses a node, so in policy sets or routes they could only mislead.
 */
export function unusableHostAddress(addr: IpAddr): string | undefined {
  const text = formatIp(addr);
  if (addr.value === 0n) return `${text} is the unspecified address`;
  if (addr.family === 4) {
    if (cidrContainsIp(LOOPBACK4, addr)) return `${text} is a loopback address`;
    if (cidrContainsIp(MULTICAST4, addr)) return `${text} is a multicast address`;
    if (addr.value === 0xffffffffn) return `${text} is the broadcast address`;
    return undefined;
  }
  if (addr.value === 1n) return `${text} is the loopback address`;
  if (cidrContainsIp(MULTICAST6, addr)) return `${text} is a multicast address`;
  return undefined;
}

export function parseMac(text: string): Buffer {
  const parts = text.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`"${text}" is not a MAC address`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

export function formatMac(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":");
}
