/**
 * The only code that speaks rtnetlink, through the `netlink` package: links,
 * addresses, routes, neighbours and FDB entries, as plain values. Everything above it
 * deals in model types; everything here is a thin, typed translation.
 */
import { AttrStream, FlagsNew, type RtNetlinkSocket, createRtNetlink, ifla, rt } from "netlink";
import { type Cidr, type Family, type IpAddr, formatMac, ipFromBytes, ipToBytes, parseMac } from "../model/ip.js";

const AF_INET = 2;
const AF_INET6 = 10;
const AF_BRIDGE = 7;
const RT_TABLE_MAIN = 254;
/** rtm_flags bit RTNH_F_ONLINK. */
const RTNH_F_ONLINK = 4;
/** Routes we install carry this protocol number, so we only ever remove our own. */
export const SLUICE_RT_PROTO = 77;

export const afOf = (family: Family): number => (family === 4 ? AF_INET : AF_INET6);

export interface LinkInfo {
  index: number;
  name: string;
  mtu: number;
  mac: string | undefined;
  up: boolean;
  kind: string | undefined;
  /** For vxlan links: the VNI, local address, port and underlay link. */
  vxlan?: { vni: number | undefined; local: IpAddr | undefined; port: number | undefined; link: number | undefined; learning: boolean; gbp: boolean };
  /** For ipip links: the local and remote addresses (remote undefined: any, as a flannel-style tunnel has it). */
  ipip?: { local: IpAddr | undefined; remote: IpAddr | undefined };
}

// The netlink package writes IFLA_IPTUN_LOCAL/REMOTE (__be32) as host-order u32s: pass the address's bytes read little-endian.
const be32ToU32 = (ip: IpAddr): number => ipToBytes(ip).readUInt32LE(0);
function u32ToIp4(n: number | undefined): IpAddr | undefined {
  if (!n) return undefined;
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return ipFromBytes(b);
}

export interface AddrInfo {
  index: number;
  family: Family;
  address: IpAddr;
  prefixLen: number;
  scope: number;
}

export interface RouteInfo {
  family: Family;
  dst: Cidr;
  gateway: IpAddr | undefined;
  oif: number | undefined;
  onlink: boolean;
  protocol: number;
  blackhole: boolean;
  table: number;
}

export interface NeighInfo {
  ifindex: number;
  ip: IpAddr;
  mac: string | undefined;
  permanent: boolean;
}

export interface FdbInfo {
  ifindex: number;
  mac: string;
  dst: IpAddr | undefined;
  permanent: boolean;
}

function toBuffer(data: Parameters<AttrStream["emit"]>[0]): Buffer {
  const s = new AttrStream();
  s.emit(data);
  return Buffer.concat(s.bufs);
}

function protocolNumber(p: rt.Route["protocol"]): number {
  if (p === undefined) return 0;
  return typeof p === "number" ? p : rt.RouteProtocol[p];
}

function routeType(t: rt.Route["type"]): number {
  if (t === undefined) return 0;
  return typeof t === "number" ? t : rt.RouteType[t];
}

export class Netlink {
  private readonly sock: RtNetlinkSocket;

  constructor() {
    this.sock = createRtNetlink();
  }

  close(): void {
    this.sock.socket.close();
  }

  async links(): Promise<LinkInfo[]> {
    const msgs = await this.sock.getLinks();
    return msgs.map((m) => {
      const info = m.attrs.linkinfo ? ifla.parseInfo(m.attrs.linkinfo) : undefined;
      const link: LinkInfo = {
        index: m.data.index ?? 0,
        name: m.attrs.ifname ?? "",
        mtu: m.attrs.mtu ?? 0,
        mac: m.attrs.address && m.attrs.address.length === 6 ? formatMac(m.attrs.address) : undefined,
        up: Boolean(m.data.flags?.up),
        kind: info?.kind,
      };
      if (info?.kind === "vxlan" && info.data) {
        const vx = ifla.parseVxlan(info.data);
        link.vxlan = {
          vni: vx.id,
          local: vx.local ? ipFromBytes(vx.local) : vx.local6 ? ipFromBytes(vx.local6) : undefined,
          port: vx.port ? vx.port.readUInt16BE(0) : undefined,
          link: vx.link,
          learning: Boolean(vx.learning),
          gbp: Boolean(vx.gbp),
        };
      }
      if (info?.kind === "ipip" && info.data) {
        const t = ifla.parseIptun(info.data);
        link.ipip = { local: u32ToIp4(t.local), remote: u32ToIp4(t.remote) };
      } else if (info?.kind === "ipip") {
        link.ipip = { local: undefined, remote: undefined };
      }
      return link;
    });
  }

  async linkByName(name: string): Promise<LinkInfo | undefined> {
    return (await this.links()).find((l) => l.name === name);
  }

  async createVxlan(o: { name: string; vni: number; local: IpAddr; port: number; underlayIndex: number; mtu: number; mac: string; learning: boolean; gbp: boolean }): Promise<void> {
    const port = Buffer.alloc(2);
    port.writeUInt16BE(o.port);
    const vx: ifla.Vxlan = {
      id: o.vni,
      link: o.underlayIndex,
      learning: o.learning ? 1 : 0,
      port,
      ...(o.local.family === 4 ? { local: ipToBytes(o.local) } : { local6: ipToBytes(o.local) }),
      ...(o.gbp ? { gbp: true as const } : {}),
    };
    const linkinfo = toBuffer(ifla.formatInfo({ kind: "vxlan", data: toBuffer(ifla.formatVxlan(vx)) }));
    await this.sock.newLink({}, { ifname: o.name, mtu: o.mtu, address: parseMac(o.mac), linkinfo }, { flags: FlagsNew.CREATE | FlagsNew.EXCL });
  }

  /** An IPIP tunnel from `local` to any remote (the route's gateway picks the peer); rejects when the kernel has no IPIP. */
  async createIpip(o: { name: string; local: IpAddr; mtu: number }): Promise<void> {
    const data = toBuffer(ifla.formatIptun({ local: be32ToU32(o.local), pmtudisc: 1 }));
    const linkinfo = toBuffer(ifla.formatInfo({ kind: "ipip", data }));
    await this.sock.newLink({}, { ifname: o.name, mtu: o.mtu, linkinfo }, { flags: FlagsNew.CREATE | FlagsNew.EXCL });
  }

  /** A link of a kind that takes no attributes at creation (wireguard); rejects when the kernel lacks the kind. */
  async createLink(o: { name: string; kind: string; mtu: number }): Promise<void> {
    const linkinfo = toBuffer(ifla.formatInfo({ kind: o.kind }));
    await this.sock.newLink({}, { ifname: o.name, mtu: o.mtu, linkinfo }, { flags: FlagsNew.CREATE | FlagsNew.EXCL });
  }

  async deleteLink(index: number): Promise<void> {
    await this.sock.delLink({ index });
  }

  async setLink(index: number, o: { up?: boolean; mtu?: number }): Promise<void> {
    const data: rt.Link = { index };
    if (o.up !== undefined) {
      data.change = { up: true };
      data.flags = o.up ? { up: true } : {};
    }
    await this.sock.setLink(data, o.mtu !== undefined ? { mtu: o.mtu } : {});
  }

  async addresses(family?: Family): Promise<AddrInfo[]> {
    const msgs = await this.sock.getAddresses(family ? { family: afOf(family) } : {});
    const out: AddrInfo[] = [];
    for (const m of msgs) {
      const raw = m.attrs.local ?? m.attrs.address;
      if (!raw || (raw.length !== 4 && raw.length !== 16)) continue;
      const address = ipFromBytes(raw);
      out.push({ index: m.data.index ?? 0, family: address.family, address, prefixLen: m.data.prefixlen ?? 0, scope: m.data.scope ?? 0 });
    }
    return out;
  }

  async addAddress(index: number, addr: IpAddr, prefixLen: number): Promise<void> {
    const bytes = ipToBytes(addr);
    await this.sock.newAddress({ family: afOf(addr.family), prefixlen: prefixLen, index }, { local: bytes, address: bytes }, { flags: FlagsNew.CREATE | FlagsNew.REPLACE });
  }

  async delAddress(index: number, addr: IpAddr, prefixLen: number): Promise<void> {
    const bytes = ipToBytes(addr);
    await this.sock.delAddress({ family: afOf(addr.family), prefixlen: prefixLen, index }, { local: bytes, address: bytes });
  }

  /** Routes of the main table. */
  async routes(family: Family): Promise<RouteInfo[]> {
    const msgs = await this.sock.getRoutes({ family: afOf(family) });
    const out: RouteInfo[] = [];
    for (const m of msgs) {
      const table = m.attrs.table ?? m.data.table ?? 0;
      if (table !== RT_TABLE_MAIN) continue;
      const len = m.data.dstLen ?? 0;
      const dstIp = m.attrs.dst ? ipFromBytes(m.attrs.dst) : { family, value: 0n };
      out.push({
        family,
        dst: { family, ip: dstIp.value, prefixLen: len },
        gateway: m.attrs.gateway ? ipFromBytes(m.attrs.gateway) : undefined,
        oif: m.attrs.oif,
        onlink: ((m.data.flags?.__unknown ?? 0) & RTNH_F_ONLINK) !== 0,
        protocol: protocolNumber(m.data.protocol),
        blackhole: routeType(m.data.type) === rt.RouteType.BLACKHOLE,
        table,
      });
    }
    return out;
  }

  async replaceRoute(r: { dst: Cidr; gateway: IpAddr | undefined; oif: number | undefined; onlink: boolean; blackhole: boolean }): Promise<void> {
    const data: rt.Route = {
      family: afOf(r.dst.family),
      dstLen: r.dst.prefixLen,
      table: RT_TABLE_MAIN,
      protocol: SLUICE_RT_PROTO as rt.RouteProtocol,
      scope: "UNIVERSE",
      type: r.blackhole ? "BLACKHOLE" : "UNICAST",
      ...(r.onlink ? { flags: { __unknown: RTNH_F_ONLINK } } : {}),
    };
    const attrs: rt.RouteAttrs = { dst: ipToBytes({ family: r.dst.family, value: r.dst.ip }) };
    if (r.gateway) attrs.gateway = ipToBytes(r.gateway);
    if (r.oif !== undefined) attrs.oif = r.oif;
    await this.sock.newRoute(data, attrs, { flags: FlagsNew.CREATE | FlagsNew.REPLACE });
  }

  async deleteRoute(r: RouteInfo): Promise<void> {
    const data: rt.Route = { family: afOf(r.family), dstLen: r.dst.prefixLen, table: r.table, protocol: r.protocol as rt.RouteProtocol, scope: "NOWHERE" };
    const attrs: rt.RouteAttrs = { dst: ipToBytes({ family: r.family, value: r.dst.ip }) };
    if (r.oif !== undefined) attrs.oif = r.oif;
    if (r.gateway) attrs.gateway = ipToBytes(r.gateway);
    await this.sock.delRoute(data, attrs);
  }

  async neighbors(family: Family, ifindex: number): Promise<NeighInfo[]> {
    const msgs = await this.sock.getNeighbors({ family: afOf(family), ifindex });
    return msgs
      .filter((m) => m.data.ifindex === ifindex && m.attrs.dst)
      .map((m) => ({
        ifindex,
        ip: ipFromBytes(m.attrs.dst as Buffer),
        mac: m.attrs.lladdr && m.attrs.lladdr.length === 6 ? formatMac(m.attrs.lladdr) : undefined,
        permanent: Boolean(m.data.state?.permanent),
      }));
  }

  async replaceNeighbor(ifindex: number, ip: IpAddr, mac: string): Promise<void> {
    await this.sock.newNeighbor({ family: afOf(ip.family), ifindex, state: { permanent: true } }, { dst: ipToBytes(ip), lladdr: parseMac(mac) }, { flags: FlagsNew.CREATE | FlagsNew.REPLACE });
  }

  async deleteNeighbor(ifindex: number, ip: IpAddr): Promise<void> {
    await this.sock.delNeighbor({ family: afOf(ip.family), ifindex }, { dst: ipToBytes(ip) });
  }

  async fdb(ifindex: number): Promise<FdbInfo[]> {
    const msgs = await this.sock.getNeighbors({ family: AF_BRIDGE, ifindex });
    return msgs
      .filter((m) => m.data.ifindex === ifindex && m.attrs.lladdr)
      .map((m) => ({
        ifindex,
        mac: formatMac(m.attrs.lladdr as Buffer),
        dst: m.attrs.dst ? ipFromBytes(m.attrs.dst) : undefined,
        permanent: Boolean(m.data.state?.permanent),
      }));
  }

  async appendFdb(ifindex: number, mac: string, dst: IpAddr): Promise<void> {
    await this.sock.newNeighbor({ family: AF_BRIDGE, ifindex, state: { permanent: true }, flags: { self: true } }, { dst: ipToBytes(dst), lladdr: parseMac(mac) }, { flags: FlagsNew.CREATE | FlagsNew.APPEND });
  }

  async deleteFdb(ifindex: number, mac: string, dst: IpAddr | undefined): Promise<void> {
    const attrs: rt.NeighborAttrs = { lladdr: parseMac(mac) };
    if (dst) attrs.dst = ipToBytes(dst);
    await this.sock.delNeighbor({ family: AF_BRIDGE, ifindex, flags: { self: true } }, attrs);
  }
}
