/**
 * CNI results: one internal shape (the 1.x one) and conversions to and from what each
 * cniVersion puts on the wire. 0.3.x/0.4.0 mark every IP with "version"; 1.0.0 dropped it;
 * 1.1.0 added an interface "mtu" (and route fields we do not use).
 */
import { CNI_ERR, CniError } from "./errors.js";
import type { CniVersion } from "../config/cniConfig.js";

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}

export interface CniIpConfig {
  /** CIDR notation: the address and its prefix length ("10.244.1.5/32"). */
  address: string;
  gateway?: string;
  /** Index into interfaces. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns: CniDns;
}

const isV1 = (v: CniVersion): boolean => v.startsWith("1.");

/** The result as the given cniVersion writes it. */
export function encodeResult(r: CniResult, version: CniVersion): Record<string, unknown> {
  const interfaces = r.interfaces.map((i) => {
    const out: Record<string, unknown> = { name: i.name };
    if (i.mac !== undefined) out["mac"] = i.mac;
    if (i.mtu !== undefined && version === "1.1.0") out["mtu"] = i.mtu;
    if (i.sandbox !== undefined) out["sandbox"] = i.sandbox;
    return out;
  });
  const ips = r.ips.map((ip) => {
    const out: Record<string, unknown> = {};
    if (!isV1(version)) out["version"] = ip.address.includes(":") ? "6" : "4";
    if (ip.interface !== undefined) out["interface"] = ip.interface;
    out["address"] = ip.address;
    if (ip.gateway !== undefined) out["gateway"] = ip.gateway;
    return out;
  });
  return { cniVersion: version, interfaces, ips, routes: r.routes.map((rt) => ({ ...rt })), dns: { ...r.dns } };
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

function bad(what: string): CniError {
  return new CniError(CNI_ERR.decode, `prevResult: ${what}`);
}

/** Reads a prevResult of any supported version into the internal shape (unknown fields dropped). */
export function decodeResult(raw: Record<string, unknown>): CniResult {
  const interfaces: CniInterface[] = [];
  const rawIfs = raw["interfaces"] ?? [];
  if (!Array.isArray(rawIfs)) throw bad("interfaces: expected array");
  for (const [n, i] of rawIfs.entries()) {
    if (!isObj(i) || typeof i["name"] !== "string") throw bad(`interfaces[${n}]: expected an object with a name`);
    const out: CniInterface = { name: i["name"] };
    const mac = str(i["mac"]);
    if (mac !== undefined) out.mac = mac;
    if (typeof i["mtu"] === "number") out.mtu = i["mtu"];
    const sandbox = str(i["sandbox"]);
    if (sandbox !== undefined) out.sandbox = sandbox;
    interfaces.push(out);
  }
  const ips: CniIpConfig[] = [];
  const rawIps = raw["ips"] ?? [];
  if (!Array.isArray(rawIps)) throw bad("ips: expected array");
  for (const [n, ip] of rawIps.entries()) {
    if (!isObj(ip) || typeof ip["address"] !== "string") throw bad(`ips[${n}]: expected an object with an address`);
    const out: CniIpConfig = { address: ip["address"] };
    const gw = str(ip["gateway"]);
    if (gw !== undefined) out.gateway = gw;
    if (typeof ip["interface"] === "number") out.interface = ip["interface"];
    ips.push(out);
  }
  const routes: CniRoute[] = [];
  const rawRoutes = raw["routes"] ?? [];
  if (!Array.isArray(rawRoutes)) throw bad("routes: expected array");
  for (const [n, rt] of rawRoutes.entries()) {
    if (!isObj(rt) || typeof rt["dst"] !== "string") throw bad(`routes[${n}]: expected an object with a dst`);
    const gw = str(rt["gw"]);
    routes.push(gw === undefined ? { dst: rt["dst"] } : { dst: rt["dst"], gw });
  }
  const dns: CniDns = {};
  if (isObj(raw["dns"])) {
    const d = raw["dns"];
    const list = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : undefined);
    const ns = list(d["nameservers"]);
    if (ns) dns.nameservers = ns;
    const domain = str(d["domain"]);
    if (domain !== undefined) dns.domain = domain;
    const search = list(d["search"]);
    if (search) dns.search = search;
    const options = list(d["options"]);
    if (options) dns.options = options;
  }
  return { interfaces, ips, routes, dns };
}

/**
 * A chained ADD's result: what earlier plugins reported, then ours, with our interface
 * indices shifted past theirs.
 */
export function mergeResults(prev: CniResult | undefined, ours: CniResult): CniResult {
  if (!prev) return ours;
  const shift = prev.interfaces.length;
  return {
    interfaces: [...prev.interfaces, ...ours.interfaces],
    ips: [...prev.ips, ...ours.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + shift }))],
    routes: [...prev.routes, ...ours.routes],
    dns: Object.keys(prev.dns).length ? prev.dns : ours.dns,
  };
}
