/**
 * Pod addresses out of the node's subnet, host-local style: one file per allocated
 * address under <dataDir>/<network>/, named by the address and holding
 * "<containerId>\r\n<ifName>" (host-local's own format), plus a last-reserved cursor per
 * family so a released address is not handed out again until the range wraps.
 *
 * An allocation file appears complete or not at all: the owner is written to a temp file
 * that is then hard-linked to the address's name (link fails with EEXIST when the name
 * exists), so concurrent plugin processes can never take the same address and a plugin
 * killed midway never leaves an empty allocation behind; no lock is held. gc() also
 * removes empty or unreadable allocation files (older stores, crashes of other writers)
 * and leftover temp files once they are older than STALE_PARTIAL_MS. Synchronous on purpose: a plugin process does one thing at
 * a time, and tiny synchronous file operations are faster than the thread pool.
 */
import { linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Cidr, type Family, type IpAddr, cidrContainsIp, cidrSize, formatCidr, formatIp, parseIp } from "../model/ip.js";

export interface IpamOwner {
  containerId: string;
  ifName: string;
}

export interface Allocation extends IpamOwner {
  ip: IpAddr;
}

/** Thrown when the subnet has no free address; nothing was allocated. */
export class NoFreeAddressError extends Error {
  constructor(
    readonly subnet: Cidr,
    readonly inUse: number,
  ) {
    super(`no free address in ${formatCidr(subnet)} (${inUse} allocated)`);
    this.name = "NoFreeAddressError";
  }
}

const CURSOR = "last_reserved_ip.";
/** Temp files (owner being written, cursor being replaced) start with a dot. */
const TEMP_PREFIX = ".";
/** An empty/unreadable allocation file or a temp file this old is a leftover of a killed writer. */
export const STALE_PARTIAL_MS = 60_000;
const LINE_BREAK = "\r\n";
const ownerKey = (o: IpamOwner): string => `${o.containerId}${LINE_BREAK}${o.ifName}`;

/**
 * The addresses pods may get: the subnet without its network address (.0, which the
 * node's VXLAN device uses), the next one (.1, kept for a bridge or gateway) and the
 * last one (IPv4 broadcast; skipped for IPv6 too, for symmetry).
 */
export function allocatableRange(subnet: Cidr): { first: bigint; last: bigint; count: bigint } {
  const first = subnet.ip + 2n;
  const last = subnet.ip + cidrSize(subnet) - 2n;
  return { first, last, count: last >= first ? last - first + 1n : 0n };
}

export function isAllocatable(subnet: Cidr, ip: IpAddr): boolean {
  const r = allocatableRange(subnet);
  return cidrContainsIp(subnet, ip) && ip.value >= r.first && ip.value <= r.last;
}

const isErrno = (err: unknown, code: string): boolean => (err as NodeJS.ErrnoException | null)?.code === code;

function tryParseIp(name: string): IpAddr | undefined {
  if (name.startsWith(".") || name.startsWith(CURSOR)) return undefined;
  try {
    return parseIp(name);
  } catch {
    return undefined;
  }
}

export class PodIpam {
  constructor(readonly dir: string) {}

  /** The store of one network: <dataDir>/<network name>. */
  static forNetwork(dataDir: string, network: string): PodIpam {
    return new PodIpam(join(dataDir, network));
  }

  private names(): string[] {
    try {
      return readdirSync(this.dir);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return [];
      throw err;
    }
  }

  private readOwner(name: string): IpamOwner | undefined {
    let text: string;
    try {
      text = readFileSync(join(this.dir, name), "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw err;
    }
    // Empty: a writer (an older version, or another tool) created it and has not written it yet, or died.
    if (text === "") return undefined;
    const [containerId = "", ifName = ""] = text.split(/\r?\n/);
    return { containerId: containerId.trim(), ifName: ifName.trim() };
  }

  /** Every allocation with a known owner (files still being written are left out). */
  list(): Allocation[] {
    const out: Allocation[] = [];
    for (const name of this.names()) {
      const ip = tryParseIp(name);
      if (!ip) continue;
      const owner = this.readOwner(name);
      if (owner) out.push({ ip, ...owner });
    }
    return out;
  }

  /** How many addresses of the subnet are taken (files being written count too). */
  inUse(subnet: Cidr): number {
    return this.names().filter((n) => {
      const ip = tryParseIp(n);
      return ip !== undefined && isAllocatable(subnet, ip);
    }).length;
  }

  freeCount(subnet: Cidr): bigint {
    return allocatableRange(subnet).count - BigInt(this.inUse(subnet));
  }

  findByOwner(owner: IpamOwner): IpAddr[] {
    return this.list()
      .filter((a) => a.containerId === owner.containerId && a.ifName === owner.ifName)
      .map((a) => a.ip);
  }

  private cursorPath(family: Family): string {
    return join(this.dir, `${CURSOR}${family === 4 ? 0 : 1}`);
  }

  private readCursor(subnet: Cidr): bigint | undefined {
    try {
      const ip = parseIp(readFileSync(this.cursorPath(subnet.family), "utf8"));
      return isAllocatable(subnet, ip) ? ip.value : undefined;
    } catch {
      return undefined;
    }
  }

  private tempPath(what: string): string {
    return join(this.dir, `${TEMP_PREFIX}${what}${process.pid}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`);
  }

  private writeCursor(ip: IpAddr): void {
    // Replace, never truncate in place: a concurrent reader sees the old or the new cursor.
    const path = this.cursorPath(ip.family);
    const tmp = this.tempPath(CURSOR);
    writeFileSync(tmp, formatIp(ip));
    renameSync(tmp, path);
  }

  /**
   * Takes the next free address after the cursor (wrapping once through the range) for
   * `owner`. Throws NoFreeAddressError when every address is taken.
   */
  allocate(subnet: Cidr, owner: IpamOwner): IpAddr {
    mkdirSync(this.dir, { recursive: true });
    const { first, count } = allocatableRange(subnet);
    const taken = new Set(this.names());
    const cursor = this.readCursor(subnet);
    const start = cursor === undefined ? 0n : (cursor - first + 1n) % (count || 1n);
    // The owner goes into a temp file first; link() then publishes it complete, atomically.
    const tmp = this.tempPath("alloc.");
    writeFileSync(tmp, ownerKey(owner), { flag: "wx", mode: 0o644 });
    try {
      for (let i = 0n; i < count; i++) {
        const ip: IpAddr = { family: subnet.family, value: first + ((start + i) % count) };
        const name = formatIp(ip);
        if (taken.has(name)) continue;
        try {
          linkSync(tmp, join(this.dir, name));
        } catch (err) {
          if (isErrno(err, "EEXIST")) continue; // another ADD got there first
          throw err;
        }
        this.writeCursor(ip);
        return ip;
      }
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        // left for gc(), which removes stale temp files
      }
    }
    throw new NoFreeAddressError(subnet, this.inUse(subnet));
  }

  /** Releases one address if (and only if) `owner` holds it. */
  release(ip: IpAddr, owner: IpamOwner): boolean {
    const name = formatIp(ip);
    const held = this.readOwner(name);
    if (!held || held.containerId !== owner.containerId || held.ifName !== owner.ifName) return false;
    return this.unlink(name);
  }

  /** Releases everything `owner` holds; idempotent. */
  releaseByOwner(owner: IpamOwner): IpAddr[] {
    const released: IpAddr[] = [];
    for (const ip of this.findByOwner(owner)) if (this.unlink(formatIp(ip))) released.push(ip);
    return released;
  }

  /**
   * Releases every allocation whose owner is not in `valid` (CNI GC). Also removes
   * allocation files that are empty or unreadable and older than STALE_PARTIAL_MS
   * (returned with an empty owner), and temp files left by killed writers.
   */
  gc(valid: readonly IpamOwner[], now: number = Date.now()): Allocation[] {
    const keep = new Set(valid.map(ownerKey));
    const released: Allocation[] = [];
    const stale = (name: string): boolean => {
      try {
        return now - lstatSync(join(this.dir, name)).mtimeMs > STALE_PARTIAL_MS;
      } catch {
        return false; // gone already
      }
    };
    for (const name of this.names()) {
      if (name.startsWith(TEMP_PREFIX)) {
        if (stale(name)) this.unlinkQuietly(name);
        continue;
      }
      const ip = tryParseIp(name);
      if (!ip) continue;
      let owner: IpamOwner | undefined;
      let unreadable = false;
      try {
        owner = this.readOwner(name);
      } catch {
        unreadable = true;
      }
      if (owner && owner.containerId !== "") {
        if (!keep.has(ownerKey(owner)) && this.unlink(name)) released.push({ ip, ...owner });
      } else if ((unreadable || owner !== undefined || this.isEmpty(name)) && stale(name) && this.unlinkQuietly(name)) {
        released.push({ ip, containerId: "", ifName: "" });
      }
    }
    return released;
  }

  private isEmpty(name: string): boolean {
    try {
      return lstatSync(join(this.dir, name)).size === 0;
    } catch {
      return false;
    }
  }

  /** For garbage: a file that cannot be removed (a directory, say) must not fail the whole GC. */
  private unlinkQuietly(name: string): boolean {
    try {
      return this.unlink(name);
    } catch {
      return false;
    }
  }

  private unlink(name: string): boolean {
    try {
      unlinkSync(join(this.dir, name));
      return true;
    } catch (err) {
      if (isErrno(err, "ENOENT")) return false;
      throw err;
    }
  }
}
