/**
 * udp on the node: the persistent TUN device `sluice.udp` (tun.ts) with MTU and the
 * subnet's network address, and the forwarder (forwarder.ts) on this node's public address
 * and `Port`, started with the first device check and kept for the agent's life; its peer
 * table follows the desired peers on every routes apply. A restart reattaches to the same
 * device, so its routes never go away.
 */
import { formatIp } from "../../model/ip.js";
import { ensureDeviceAddress } from "../deviceAddress.js";
import { refuseForeignLink } from "../foreignLink.js";
import type { BackendKernel } from "../kernelTypes.js";
import { UdpForwarder } from "./forwarder.js";
import { UdpPeerTable } from "./peerTable.js";
import { UDP_DEVICE, type UdpBackend } from "./spec.js";
import { openTun } from "./tun.js";

/** This process's forwarder (one agent per process) and the TUN descriptor it reads. */
let running: { fd: number; forwarder: UdpForwarder } | undefined;
let localSubnet: UdpPeerTable["local"];

export const udpKernel: BackendKernel<UdpBackend> = {
  resolveLocal: async () => ({}),

  async ensureDevices(c, node, lease, mtu) {
    const local = node.publicIP[4];
    const pool = node.network.ipv4;
    if (!lease.subnet || !local || !pool) return {};
    const { nl, log } = node;
    const existing = await nl.linkByName(UDP_DEVICE);
    refuseForeignLink(existing, UDP_DEVICE, (l) => l.kind === "tun", "TUN");
    const bindAddress = formatIp(local);
    if (running && (running.forwarder.port !== c.port || running.forwarder.bindAddress !== bindAddress)) {
      running.forwarder.stop();
      running = { fd: running.fd, forwarder: await UdpForwarder.start({ fd: running.fd, port: c.port, bindAddress, mtu, log }) };
    }
    if (!running) {
      const fd = openTun(UDP_DEVICE);
      running = { fd, forwarder: await UdpForwarder.start({ fd, port: c.port, bindAddress, mtu, log }) };
      log.info({ device: UDP_DEVICE, port: c.port, bindAddress, reattached: existing !== undefined }, "udp backend forwarding");
    }
    const link = await nl.linkByName(UDP_DEVICE);
    if (!link) throw new Error(`TUN device ${UDP_DEVICE} vanished right after it was opened`);
    if (link.mtu !== mtu) await nl.setLink(link.index, { mtu });
    if (!link.up) await nl.setLink(link.index, { up: true });
    await ensureDeviceAddress(nl, link.index, { family: 4, value: lease.subnet.ip }, pool.network);
    localSubnet = lease.subnet;
    return { 4: UDP_DEVICE };
  },

  async reconcilePeers(_c, node, peers) {
    if (!running) return 0;
    const table = new UdpPeerTable(
      peers.flatMap(({ name, dev, endpoint, allowedIps }) =>
        dev === UDP_DEVICE && endpoint?.ip.family === 4 ? allowedIps.map((subnet) => ({ name, address: formatIp(endpoint.ip), port: endpoint.port, subnet })) : [],
      ),
      localSubnet,
    );
    if (!running.forwarder.setTable(table)) return 0;
    node.log.info({ peers: table.peers.map((p) => p.name) }, "udp backend peers updated");
    return 1;
  },

  ownsLink: (link) => link.kind === "tun" && link.name === UDP_DEVICE,
};
