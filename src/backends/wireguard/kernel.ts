/**
 * WireGuard on the node: the key pair (keys.ts), its devices (device.ts) with their own
 * address, MTU, private key and port, and their peers made to match the desired ones on
 * every routes apply (added, removed, endpoint or subnets changed), one `wg set` per device.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Family, type IpAddr, formatCidr, formatIp } from "../../model/ip.js";
import type { DesiredTunnelPeer } from "../../routing/desired.js";
import { ensureDeviceAddress } from "../deviceAddress.js";
import type { BackendKernel, BackendNode } from "../kernelTypes.js";
import type { BackendDevices } from "../types.js";
import { ensureWireguardLink, isWireguardLink } from "./device.js";
import { generatePrivateKey, keyFilePath, publicKeyOf, readPrivateKey, writeKeyFile } from "./keys.js";
import { type WireguardBackend, wireguardDeviceName, wireguardPort } from "./spec.js";
import { type WgPeerState, wgSet, wgShow } from "./wgTool.js";

const DEVICE_NAME = /^sluice-wg(-v6)?$/;

const familyEnabled = (node: BackendNode, family: Family): boolean => (family === 4 ? node.network.enableIPv4 : node.network.enableIPv6);

export const wireguardKernel: BackendKernel<WireguardBackend> = {
  /** The public key must survive restarts: the key file's, else the existing device's (written back to the file), else a new pair. */
  async resolveLocal(c, node) {
    const path = keyFilePath();
    let key = readPrivateKey(path);
    if (!key) {
      for (const family of [4, 6] as const) {
        const dev = wireguardDeviceName(c.mode, family);
        if (!key && (await node.nl.linkByName(dev))) key = (await wgShow(dev).catch(() => undefined))?.privateKey;
      }
      const fromDevice = key !== undefined;
      key ??= generatePrivateKey();
      await writeKeyFile(path, key);
      node.log.info({ keyFile: path, publicKey: publicKeyOf(key), from: fromDevice ? "the existing device" : "a new key pair" }, "WireGuard private key written");
    }
    const publicKey = publicKeyOf(key);
    const out: Partial<Record<Family, string>> = {};
    for (const family of [4, 6] as const) if (familyEnabled(node, family)) out[family] = publicKey;
    return out;
  },

  async ensureDevices(c, node, lease, mtu, local) {
    const keyFile = keyFilePath();
    const key = readPrivateKey(keyFile);
    const published = local[4] ?? local[6];
    // The lease says which public key peers expect: a key file replaced under a running agent is not taken until it restarts and publishes it.
    const keyUsable = key !== undefined && publicKeyOf(key) === published;
    if (!keyUsable) node.log.error({ keyFile }, "WireGuard key file no longer matches the public key in this node's lease; keeping the device's key (restart the agent to publish a new one)");
    const out: Partial<Record<Family, string>> = {};
    for (const family of [4, 6] as const) {
      const subnet = family === 4 ? lease.subnet : lease.subnet6;
      const pool = family === 4 ? node.network.ipv4 : node.network.ipv6;
      if (!subnet || !pool) continue;
      const name = wireguardDeviceName(c.mode, family);
      const link = await ensureWireguardLink(node.nl, name, mtu, node.log);
      await ensureDeviceAddress(node.nl, link.index, { family, value: subnet.ip }, pool.network);
      const port = wireguardPort(c, family);
      const state = await wgShow(name);
      const args = [...(keyUsable && state.privateKey !== key ? ["private-key", keyFile] : []), ...(state.listenPort !== port ? ["listen-port", String(port)] : [])];
      if (args.length > 0) {
        await wgSet(name, args);
        node.log.info({ device: name, port, publicKey: published }, "WireGuard device configured");
      }
      out[family] = name;
    }
    return out satisfies BackendDevices;
  },

  async reconcilePeers(c, node, peers, devices) {
    const pskFile = join(dirname(keyFilePath()), "wgpsk");
    if (c.psk !== undefined && readFileOr(pskFile) !== c.psk) await writeKeyFile(pskFile, c.psk);
    let changed = 0;
    for (const dev of new Set(Object.values(devices))) {
      if (dev === undefined) continue;
      const state = await wgShow(dev);
      const want = peers.filter((p) => p.dev === dev);
      const args: string[] = [];
      for (const key of state.peers.keys()) if (!want.some((p) => p.publicKey === key)) args.push("peer", key, "remove");
      for (const p of want) {
        const have = state.peers.get(p.publicKey);
        if (have && peerMatches(have, p, c.psk)) continue;
        args.push("peer", p.publicKey);
        args.push("preshared-key", c.psk !== undefined ? pskFile : "/dev/null");
        if (p.endpoint) args.push("endpoint", endpointText(p.endpoint));
        args.push("allowed-ips", p.allowedIps.map(formatCidr).join(","));
        args.push("persistent-keepalive", p.keepaliveSeconds > 0 ? String(p.keepaliveSeconds) : "off");
      }
      if (args.length === 0) continue;
      await wgSet(dev, args);
      changed += args.filter((a) => a === "peer").length;
      node.log.info({ device: dev, peers: want.map((p) => ({ name: p.name, endpoint: p.endpoint && endpointText(p.endpoint) })), removed: args.filter((a, i) => a === "remove" && i > 0).length }, "WireGuard peers reconciled");
    }
    return changed;
  },

  ownsLink: (link) => DEVICE_NAME.test(link.name) && isWireguardLink(link),
};

function endpointText(e: { ip: IpAddr; port: number }): string {
  return e.ip.family === 6 ? `[${formatIp(e.ip)}]:${e.port}` : `${formatIp(e.ip)}:${e.port}`;
}

function peerMatches(have: WgPeerState, want: DesiredTunnelPeer, psk: string | undefined): boolean {
  if (have.presharedKey !== psk) return false;
  if (want.endpoint && have.endpoint !== endpointText(want.endpoint)) return false;
  if (have.keepaliveSeconds !== want.keepaliveSeconds) return false;
  const allowed = want.allowedIps.map(formatCidr).sort();
  return allowed.length === have.allowedIps.length && allowed.every((a, i) => a === have.allowedIps[i]);
}

function readFileOr(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}
