/**
 * The VXLAN device: created once, reused across restarts (its MAC is what peers have
 * in their neighbour tables, so it must not change), recreated only if its settings
 * no longer match the config.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Netlink } from "../../dataplane/netlink.js";
import { type Cidr, type IpAddr, formatIp, ipEquals } from "../../model/ip.js";
import { ensureDeviceAddress } from "../deviceAddress.js";

export interface VxlanDeviceSpec {
  name: string;
  vni: number;
  port: number;
  local: IpAddr;
  underlayIndex: number;
  mtu: number;
  learning: boolean;
  gbp: boolean;
  /** A MAC to use when the device must be created (e.g. from our previous lease). */
  preferredMac: string | undefined;
  macPrefix: string;
  /** The address the device carries: the subnet's network address (/32 or /128). */
  address: IpAddr;
  /** Addresses inside this network on the device that are not `address` are removed. */
  clusterNetwork: Cidr;
}

export function randomVtepMac(prefix: string): string {
  const rest = [...randomBytes(4)].map((b) => b.toString(16).padStart(2, "0"));
  return [...prefix.toLowerCase().split(":"), ...rest].join(":");
}

/** Ensures the device exists as specified; returns its MAC. */
export async function ensureVxlanDevice(nl: Netlink, spec: VxlanDeviceSpec, log: Logger): Promise<{ mac: string; index: number }> {
  let link = await nl.linkByName(spec.name);
  let mac = spec.preferredMac ?? randomVtepMac(spec.macPrefix);
  if (link) {
    if (link.kind !== "vxlan") throw new Error(`interface ${spec.name} exists but is a ${link.kind ?? "non-vxlan"} device; remove it or change the VNI`);
    const v = link.vxlan;
    const compatible = v !== undefined && v.vni === spec.vni && v.port === spec.port && v.link === spec.underlayIndex && v.gbp === spec.gbp && v.learning === spec.learning && v.local !== undefined && ipEquals(v.local, spec.local);
    if (!compatible) {
      log.warn({ device: spec.name, have: v && { ...v, local: v.local && formatIp(v.local) } }, "VXLAN device settings changed; recreating it with the same MAC");
      if (link.mac) mac = link.mac;
      await nl.deleteLink(link.index);
      link = undefined;
    } else if (link.mac) {
      mac = link.mac;
    }
  }
  if (!link) {
    await nl.createVxlan({ name: spec.name, vni: spec.vni, local: spec.local, port: spec.port, underlayIndex: spec.underlayIndex, mtu: spec.mtu, mac, learning: spec.learning, gbp: spec.gbp });
    log.info({ device: spec.name, vni: spec.vni, mac, mtu: spec.mtu }, "created VXLAN device");
    link = await nl.linkByName(spec.name);
    if (!link) throw new Error(`VXLAN device ${spec.name} vanished right after creation`);
  }
  if (link.mtu !== spec.mtu) await nl.setLink(link.index, { mtu: spec.mtu });
  if (!link.up) await nl.setLink(link.index, { up: true });
  await ensureDeviceAddress(nl, link.index, spec.address, spec.clusterNetwork);
  return { mac, index: link.index };
}
