/**
 * Pure subnet choice. Given the pool(s), the leases that exist and what this node held
 * before, it returns the subnets to try, in order. The caller creates the key with a
 * compare-and-create transaction and comes back here when it loses a race.
 */
import type { NetworkConfig, SubnetPool } from "../config/networkConfig.js";
import { type Cidr, type IpAddr, cidr, cidrContains, cidrEquals, cidrOverlaps, ipEquals } from "../model/ip.js";
import type { Lease } from "../model/lease.js";

export interface SubnetChoice {
  subnet: Cidr | undefined;
  subnet6: Cidr | undefined;
}

export type ChoiceReason = "own-lease" | "reservation" | "previous" | "free";

export interface RankedChoice extends SubnetChoice {
  reason: ChoiceReason;
  /** Set for "own-lease": the lease to take over (compare-and-swap on its revision). */
  existing?: Lease;
}

/** How many free subnets flannel considers before picking one at random. */
export const FREE_CANDIDATES = 100;

export function inPool(pool: SubnetPool | undefined, c: Cidr | undefined): boolean {
  if (!pool) return c === undefined;
  if (!c) return false;
  return c.prefixLen === pool.subnetLen && cidrContains(pool.network, c) && c.ip >= pool.subnetMin && c.ip <= pool.subnetMax;
}

function leaseFits(config: NetworkConfig, l: { subnet: Cidr | undefined; subnet6: Cidr | undefined }): boolean {
  return inPool(config.ipv4, l.subnet) && inPool(config.ipv6, l.subnet6);
}

function matchesNode(l: Lease, publicIP: IpAddr | undefined, publicIPv6: IpAddr | undefined): boolean {
  if (publicIP && l.publicIP) return ipEquals(l.publicIP, publicIP);
  if (publicIPv6 && l.publicIPv6) return ipEquals(l.publicIPv6, publicIPv6);
  return false;
}

function taken(c: Cidr | undefined, leases: readonly Lease[]): boolean {
  if (!c) return false;
  return leases.some((l) => {
    const other = c.family === 4 ? l.subnet : l.subnet6;
    return other !== undefined && cidrOverlaps(other, c);
  });
}

/** Up to `limit` free subnets of a pool, lowest first. */
export function freeSubnets(pool: SubnetPool, leases: readonly Lease[], limit = FREE_CANDIDATES): Cidr[] {
  const out: Cidr[] = [];
  const step = 1n << BigInt((pool.family === 4 ? 32 : 128) - pool.subnetLen);
  for (let ip = pool.subnetMin; ip <= pool.subnetMax && out.length < limit; ip += step) {
    const c = cidr(pool.family, ip, pool.subnetLen);
    if (!taken(c, leases)) out.push(c);
  }
  return out;
}

export interface RankInput {
  config: NetworkConfig;
  leases: readonly Lease[];
  publicIP: IpAddr | undefined;
  publicIPv6: IpAddr | undefined;
  /** Subnets this node had before (from subnet.env). */
  previous: SubnetChoice | undefined;
  /** Injected so that tests are deterministic; returns a float in [0, 1). */
  random: () => number;
}

/**
 * This node's leases that no longer fit the network config (it changed since they were
 * taken). flannel deletes them before allocating; so do we. Reservations are the
 * operator's and are left alone.
 */
export function staleOwnLeases(config: NetworkConfig, leases: readonly Lease[], publicIP: IpAddr | undefined, publicIPv6: IpAddr | undefined): Lease[] {
  return leases.filter((l) => l.leaseId !== "0" && matchesNode(l, publicIP, publicIPv6) && !leaseFits(config, l));
}

/**
 * The reuse order: (1) this node's own lease, (2) a reservation made for this node,
 * (3) the subnet in subnet.env if still free, (4) a free subnet picked at random
 * among the first FREE_CANDIDATES (so that concurrent nodes rarely collide).
 * A reservation for another node is never offered.
 */
export function rankChoices(input: RankInput): RankedChoice[] {
  const { config, leases, publicIP, publicIPv6, previous, random } = input;
  const out: RankedChoice[] = [];
  for (const l of leases) {
    if (!matchesNode(l, publicIP, publicIPv6) || !leaseFits(config, l)) continue;
    const reason: ChoiceReason = l.leaseId === "0" ? "reservation" : "own-lease";
    out.push({ subnet: l.subnet, subnet6: l.subnet6, reason, existing: l });
  }
  // Reservations first: an operator pinned this node to that subnet.
  out.sort((a, b) => (a.reason === b.reason ? 0 : a.reason === "reservation" ? -1 : 1));
  if (previous && leaseFits(config, previous) && !taken(previous.subnet, leases) && !taken(previous.subnet6, leases)) {
    out.push({ ...previous, reason: "previous" });
  }
  const free4 = config.ipv4 ? freeSubnets(config.ipv4, leases) : [];
  const free6 = config.ipv6 ? freeSubnets(config.ipv6, leases) : [];
  const count = config.ipv4 && config.ipv6 ? Math.min(free4.length, free6.length) : config.ipv4 ? free4.length : free6.length;
  const order = shuffled(count, random);
  for (const i of order) {
    out.push({ subnet: config.ipv4 ? free4[i] : undefined, subnet6: config.ipv6 ? free6[i] : undefined, reason: "free" });
  }
  return dedupe(out);
}

function shuffled(n: number, random: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j] as number, a[i] as number];
  }
  return a;
}

function dedupe(choices: RankedChoice[]): RankedChoice[] {
  const same = (a: Cidr | undefined, b: Cidr | undefined): boolean => (a && b ? cidrEquals(a, b) : a === b);
  return choices.filter((c, i) => choices.findIndex((d) => same(c.subnet, d.subnet) && same(c.subnet6, d.subnet6)) === i);
}
