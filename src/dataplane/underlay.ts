/**
 * Chooses the interface inter-node traffic uses, as flanneld does: --iface (names or
 * addresses, in order), then --iface-regex, then --iface-can-reach, else the interface
 * of the default route. Reports its address, MTU and the prefixes on-link through it.
 */
import { type Cidr, type Family, type IpAddr, cidr, cidrContainsIp, formatIp, ipEquals, isLinkLocal, parseIp } from "../model/ip.js";
import type { AddrInfo, LinkInfo, Netlink } from "./netlink.js";

export interface Underlay {
  name: string;
  index: number;
  mtu: number;
  ipv4: IpAddr | undefined;
  ipv6: IpAddr | undefined;
  /** Prefixes connected on this interface: peers inside them are directly reachable. */
  onLinkNetworks: Cidr[];
}

export interface UnderlayChoice {
  iface: readonly string[];
  ifaceRegex: readonly string[];
  ifaceCanReach: string | undefined;
}

function tryParseIp(s: string): IpAddr | undefined {
  try {
    return parseIp(s);
  } catch {
    return undefined;
  }
}

export async function chooseUnderlay(nl: Netlink, choice: UnderlayChoice): Promise<Underlay> {
  const links = await nl.links();
  const addrs = (await nl.addresses()).filter((a) => a.scope === 0 && !isLinkLocal(a.address));
  const build = (link: LinkInfo): Underlay => describe(link, addrs);
  const byAddr = (ip: IpAddr): LinkInfo | undefined => {
    const a = addrs.find((x) => ipEquals(x.address, ip));
    return a ? links.find((l) => l.index === a.index) : undefined;
  };

  for (const want of choice.iface) {
    const ip = tryParseIp(want);
    const link = ip ? byAddr(ip) : links.find((l) => l.name === want);
    if (link) return build(link);
  }
  if (choice.iface.length > 0 && choice.ifaceRegex.length === 0) {
    throw new Error(`--iface: none of ${choice.iface.join(", ")} is an interface name or address on this host`);
  }
  for (const pattern of choice.ifaceRegex) {
    const re = new RegExp(pattern);
    const byName = links.find((l) => re.test(l.name) && addrs.some((a) => a.index === l.index));
    if (byName) return build(byName);
    const a = addrs.find((x) => re.test(formatIp(x.address)));
    const link = a && links.find((l) => l.index === a.index);
    if (link) return build(link);
  }
  if (choice.ifaceRegex.length > 0) throw new Error(`--iface-regex: no interface matches ${choice.ifaceRegex.join(", ")}`);

  const target = choice.ifaceCanReach ? parseIp(choice.ifaceCanReach) : undefined;
  const family: Family = target?.family ?? 4;
  const routes = (await nl.routes(family)).filter((r) => !r.blackhole && r.oif !== undefined);
  const candidates = target ? routes.filter((r) => cidrContainsIp(r.dst, target)) : routes.filter((r) => r.dst.prefixLen === 0);
  candidates.sort((a, b) => b.dst.prefixLen - a.dst.prefixLen);
  const best = candidates[0];
  const link = best && links.find((l) => l.index === best.oif);
  if (!link) {
    throw new Error(target ? `--iface-can-reach: no route to ${choice.ifaceCanReach}` : "no default route to pick the inter-node interface from; set --iface");
  }
  return build(link);
}

function describe(link: LinkInfo, addrs: AddrInfo[]): Underlay {
  const mine = addrs.filter((a) => a.index === link.index);
  const v4 = mine.find((a) => a.family === 4);
  const v6 = mine.find((a) => a.family === 6);
  return {
    name: link.name,
    index: link.index,
    mtu: link.mtu,
    ipv4: v4?.address,
    ipv6: v6?.address,
    onLinkNetworks: mine.map((a) => cidr(a.family, a.address.value, a.prefixLen)),
  };
}
