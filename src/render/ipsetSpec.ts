/**
 * The desired ipsets as plain data. The policy renderer produces these; the ipset driver
 * (src/dataplane/ipset.ts) reconciles the kernel to them. Every set we own is named
 * `slc4-…` (IPv4) or `slc6-…` (IPv6), at most 31 characters (the kernel's limit), so a
 * resync can tell ours from anyone else's; temporary sets used for atomic swaps are
 * `slct-…`.
 */
import type { Family } from "../model/ip.js";

export type IpsetType = "hash:ip" | "hash:net" | "hash:ip,port";

export interface IpsetSpec {
  name: string;
  type: IpsetType;
  family: Family;
  /**
   * Members as `ipset add` takes them, canonical and sorted: `10.244.1.5`,
   * `10.0.0.0/8`, `10.1.0.0/16 nomatch` (hash:net), `10.244.1.5,tcp:80` (hash:ip,port).
   */
  members: string[];
}

export const OWNED_IPSET_PREFIXES = ["slc4-", "slc6-", "slct-"] as const;
export const IPSET_NAME_MAX = 31;

export const isOwnedIpset = (name: string): boolean => OWNED_IPSET_PREFIXES.some((p) => name.startsWith(p));
