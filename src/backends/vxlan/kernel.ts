/** VXLAN on the node: its devices (device.ts) and the VTEP MACs they keep across restarts. */
import type { Family } from "../../model/ip.js";
import type { BackendKernel } from "../kernelTypes.js";
import type { BackendDevices } from "../types.js";
import { ensureVxlanDevice, randomVtepMac } from "./device.js";
import { type VxlanBackend, vtepMacOf, vxlanDeviceName, vxlanPort } from "./spec.js";

const DEVICE_NAME = /^sluice(-v6)?\.\d+$/;

export const vxlanKernel: BackendKernel<VxlanBackend> = {
  /** The VTEP MACs must survive restarts: each is the existing device's, else the one in our old lease, else a new one. */
  async resolveLocal(c, node, previous) {
    const links = await node.nl.links();
    const out: Partial<Record<Family, string>> = {};
    for (const family of [4, 6] as const) {
      if (!(family === 4 ? node.network.enableIPv4 : node.network.enableIPv6)) continue;
      const dev = links.find((l) => l.name === vxlanDeviceName(c.vni, family) && l.kind === "vxlan");
      out[family] = dev?.mac ?? vtepMacOf(previous[family]) ?? randomVtepMac(c.macPrefix);
    }
    return out;
  },

  async ensureDevices(c, node, lease, mtu, local) {
    const out: Partial<Record<Family, string>> = {};
    for (const family of [4, 6] as const) {
      const subnet = family === 4 ? lease.subnet : lease.subnet6;
      const pool = family === 4 ? node.network.ipv4 : node.network.ipv6;
      const localIp = node.publicIP[family];
      if (!subnet || !localIp || !pool) continue;
      const name = vxlanDeviceName(c.vni, family);
      const mac = local[family];
      await ensureVxlanDevice(
        node.nl,
        { name, vni: c.vni, port: vxlanPort(c), local: localIp, underlayIndex: node.underlay.index, mtu, learning: c.learning, gbp: c.gbp, preferredMac: typeof mac === "string" ? mac : undefined, macPrefix: c.macPrefix, address: { family, value: subnet.ip }, clusterNetwork: pool.network },
        node.log,
      );
      out[family] = name;
    }
    return out satisfies BackendDevices;
  },

  ownsLink: (link) => link.kind === "vxlan" && DEVICE_NAME.test(link.name),
};
