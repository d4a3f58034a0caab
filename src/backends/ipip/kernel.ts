/**
 * IPIP on the node: the one device `sluice.ipip`, local = this node's public address,
 * remote any (flannel's shape), MTU and the subnet's network address; recreated only when
 * its local address no longer matches. Needs the kernel's ipip module (this host's kernel
 * lacks it; the kernel-feature VM's has it): without it the agent stops with that reason.
 */
import { formatIp, ipEquals } from "../../model/ip.js";
import { ensureDeviceAddress } from "../deviceAddress.js";
import { refuseForeignLink } from "../foreignLink.js";
import type { BackendKernel } from "../kernelTypes.js";
import { IPIP_DEVICE, type IpipBackend } from "./spec.js";

export const ipipKernel: BackendKernel<IpipBackend> = {
  // Nothing to keep across restarts: a peer needs only this node's public address.
  resolveLocal: async () => ({}),

  async ensureDevices(_c, node, lease, mtu) {
    const local = node.publicIP[4];
    const pool = node.network.ipv4;
    if (!lease.subnet || !local || !pool) return {};
    const { nl, log } = node;
    let link = await nl.linkByName(IPIP_DEVICE);
    refuseForeignLink(link, IPIP_DEVICE, (l) => l.kind === "ipip", "IPIP");
    if (link && !(link.ipip?.local && ipEquals(link.ipip.local, local) && link.ipip.remote === undefined)) {
      log.warn({ device: IPIP_DEVICE, local: link.ipip?.local && formatIp(link.ipip.local), want: formatIp(local) }, "IPIP device's local address changed; recreating it");
      await nl.deleteLink(link.index);
      link = undefined;
    }
    if (!link) {
      try {
        await nl.createIpip({ name: IPIP_DEVICE, local, mtu });
      } catch (err) {
        throw new Error(`cannot create IPIP device ${IPIP_DEVICE}: ${(err as Error).message} (does the kernel have the ipip module? use vxlan where it does not)`);
      }
      log.info({ device: IPIP_DEVICE, local: formatIp(local), mtu }, "created IPIP device");
      link = await nl.linkByName(IPIP_DEVICE);
      if (!link) throw new Error(`IPIP device ${IPIP_DEVICE} vanished right after creation`);
    }
    if (link.mtu !== mtu) await nl.setLink(link.index, { mtu });
    if (!link.up) await nl.setLink(link.index, { up: true });
    await ensureDeviceAddress(nl, link.index, { family: 4, value: lease.subnet.ip }, pool.network);
    return { 4: IPIP_DEVICE };
  },

  ownsLink: (link) => link.kind === "ipip" && link.name === IPIP_DEVICE,
};
