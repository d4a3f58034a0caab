/**
 * The cluster network configuration, read from `<prefix>/config` in etcd or from
 * `net-conf.json`. Key names, defaults and rules are flannel's, so that a flannel
 * operator's JSON works unchanged.
 */
import { z } from "zod";
import { type Backend, parseBackend, specOf } from "../backends/specs.js";
import { ConfigError, describeZodIssues } from "./errors.js";
import { cidrText, ipText } from "./netSchemas.js";
import { type Cidr, type Family, bitsOf, cidrContainsIp, cidrEnd, formatCidr, formatIp, parseCidr, parseIp } from "../model/ip.js";

export type { Backend, BackendType } from "../backends/specs.js";

/** One address family's pool: the network and the range leases are cut from. */
export interface SubnetPool {
  family: Family;
  network: Cidr;
  subnetLen: number;
  /** Network address of the first and the last subnet that may be leased. */
  subnetMin: bigint;
  subnetMax: bigint;
}

export interface NetworkConfig {
  enableIPv4: boolean;
  enableIPv6: boolean;
  ipv4: SubnetPool | undefined;
  ipv6: SubnetPool | undefined;
  backend: Backend;
  /** flannel's `EnableNFTables`: this cluster's nodes use nftables (the agent's `--dataplane auto` follows it). */
  enableNFTables: boolean;
}

// The type only: each backend validates its own keys (src/backends/<name>/spec.ts).
const backendSchema = z.object({ Type: z.string({ error: "must be a string naming the backend" }).default("vxlan") }).loose();

const rawSchema = z
  .object({
    Network: cidrText.optional(),
    SubnetLen: z.number().int().min(0).max(32).optional(),
    SubnetMin: ipText().optional(),
    SubnetMax: ipText().optional(),
    EnableIPv4: z.boolean().optional(),
    EnableIPv6: z.boolean().optional(),
    IPv6Network: cidrText.optional(),
    IPv6SubnetLen: z.number().int().min(0).max(128).optional(),
    IPv6SubnetMin: ipText().optional(),
    IPv6SubnetMax: ipText().optional(),
    Backend: backendSchema.optional(),
    EnableNFTables: z.boolean().optional(),
  })
  // flannel ignores keys it does not know (Networks, ...); so do we.
  .loose();

type RawConfig = z.infer<typeof rawSchema>;

/** Parses and validates a flannel-style network config; throws ConfigError naming the key. */
export function parseNetworkConfig(input: string | unknown, source = "network config"): NetworkConfig {
  let value: unknown = input;
  if (typeof input === "string") {
    try {
      value = JSON.parse(input);
    } catch (err) {
      throw new ConfigError("(root)", `is not valid JSON: ${(err as Error).message}`, source);
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError("(root)", "must be a JSON object", source);
  }
  const parsed = rawSchema.safeParse(value);
  if (!parsed.success) {
    const first = describeZodIssues(parsed.error.issues)[0];
    throw new ConfigError(first?.field ?? "(root)", first?.reason ?? "is invalid", source);
  }
  return buildConfig(parsed.data, source);
}

function buildConfig(raw: RawConfig, source: string): NetworkConfig {
  const enableIPv4 = raw.EnableIPv4 ?? true; // flannel enables IPv4 unless told otherwise
  const enableIPv6 = raw.EnableIPv6 ?? false;
  if (!enableIPv4 && !enableIPv6) throw new ConfigError("EnableIPv4", "at least one of EnableIPv4 and EnableIPv6 must be true", source);

  let ipv4: SubnetPool | undefined;
  if (enableIPv4) {
    if (!raw.Network) throw new ConfigError("Network", "is required when EnableIPv4 is true", source);
    ipv4 = buildPool(4, raw.Network, raw.SubnetLen, raw.SubnetMin, raw.SubnetMax, { net: "Network", len: "SubnetLen", min: "SubnetMin", max: "SubnetMax" }, source);
  }
  let ipv6: SubnetPool | undefined;
  if (enableIPv6) {
    if (!raw.IPv6Network) throw new ConfigError("IPv6Network", "is required when EnableIPv6 is true", source);
    ipv6 = buildPool(6, raw.IPv6Network, raw.IPv6SubnetLen, raw.IPv6SubnetMin, raw.IPv6SubnetMax, { net: "IPv6Network", len: "IPv6SubnetLen", min: "IPv6SubnetMin", max: "IPv6SubnetMax" }, source);
  }
  const backend = parseBackend(raw.Backend, source);
  const families = specOf(backend).families ?? [4, 6];
  if (enableIPv6 && !families.includes(6)) throw new ConfigError("EnableIPv6", `backend ${backend.type} carries IPv4 only; set EnableIPv6 to false or use vxlan or wireguard for dual stack`, source);
  if (enableIPv4 && !families.includes(4)) throw new ConfigError("EnableIPv4", `backend ${backend.type} carries IPv6 only`, source);
  return { enableIPv4, enableIPv6, ipv4, ipv6, backend, enableNFTables: raw.EnableNFTables ?? false };
}

interface PoolKeys {
  net: string;
  len: string;
  min: string;
  max: string;
}

function buildPool(family: Family, networkText: string, subnetLenIn: number | undefined, minText: string | undefined, maxText: string | undefined, keys: PoolKeys, source: string): SubnetPool {
  const network = parseCidr(networkText);
  if (network.family !== family) throw new ConfigError(keys.net, `must be an IPv${family} CIDR, got ${networkText}`, source);
  const bits = bitsOf(family);
  // A subnet needs room for the network, a gateway/tunnel address and a host: /30 (v4), /126 (v6).
  const smallest = bits - 2;
  // The defaults give each host a /24 (/64) when the network is big enough for four of them, else a quarter.
  const roomy = family === 4 ? 22 : 62;
  const preferred = family === 4 ? 24 : 64;
  let subnetLen: number;
  if (subnetLenIn !== undefined && subnetLenIn > 0) {
    if (subnetLenIn > smallest) throw new ConfigError(keys.len, `must be /${smallest} or shorter (each subnet needs room for a tunnel address and hosts), got ${subnetLenIn}`, source);
    if (subnetLenIn < network.prefixLen + 2) throw new ConfigError(keys.len, `must be at least ${network.prefixLen + 2} so that ${formatCidr(network)} holds at least four subnets, got ${subnetLenIn}`, source);
    subnetLen = subnetLenIn;
  } else if (network.prefixLen > smallest - 2) {
    throw new ConfigError(keys.net, `${formatCidr(network)} is too small: the smallest useful network is /${smallest - 2}`, source);
  } else {
    subnetLen = network.prefixLen <= roomy ? preferred : network.prefixLen + 2;
  }
  const size = 1n << BigInt(bits - subnetLen);
  const mask = ~(size - 1n);
  const pick = (text: string | undefined, key: string, fallback: bigint): bigint => {
    if (text === undefined || text === "") return fallback;
    const addr = parseIp(text);
    if (addr.family !== family) throw new ConfigError(key, `must be an IPv${family} address, got ${text}`, source);
    if (!cidrContainsIp(network, addr)) throw new ConfigError(key, `${text} is not inside ${keys.net} ${formatCidr(network)}`, source);
    if ((addr.value & mask) !== addr.value) throw new ConfigError(key, `${text} is not on a /${subnetLen} boundary (${keys.len})`, source);
    return addr.value;
  };
  // The first subnet is skipped by default: its network address would collide with the cluster network's.
  const subnetMin = pick(minText, keys.min, network.ip + size);
  const subnetMax = pick(maxText, keys.max, cidrEnd(network) - size);
  if (subnetMin > subnetMax) {
    throw new ConfigError(keys.min, `${formatIp({ family, value: subnetMin })} is above ${keys.max} ${formatIp({ family, value: subnetMax })}`, source);
  }
  return { family, network, subnetLen, subnetMin, subnetMax };
}
