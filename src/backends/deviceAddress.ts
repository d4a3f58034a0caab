/** A tunnel device's own address: the subnet's network address (/32, /128), the only one it carries inside the cluster network. */
import type { Netlink } from "../dataplane/netlink.js";
import { type Cidr, type IpAddr, cidrContainsIp, ipEquals } from "../model/ip.js";

export async function ensureDeviceAddress(nl: Netlink, index: number, address: IpAddr, clusterNetwork: Cidr): Promise<void> {
  const bits = address.family === 4 ? 32 : 128;
  const addrs = (await nl.addresses(address.family)).filter((a) => a.index === index);
  for (const a of addrs) {
    const isOurs = ipEquals(a.address, address) && a.prefixLen === bits;
    if (!isOurs && cidrContainsIp(clusterNetwork, a.address)) await nl.delAddress(index, a.address, a.prefixLen);
  }
  if (!addrs.some((a) => ipEquals(a.address, address) && a.prefixLen === bits)) await nl.addAddress(index, address, bits);
}
