/**
 * `wg` (wireguard-tools) drives kernel and userspace WireGuard devices alike, as
 * iptables-restore drives the filter table: `wg show <dev> dump` reads a device's state,
 * one `wg set` per device changes it. No Node binding speaks WireGuard's netlink family.
 */
import { run } from "../../dataplane/exec.js";

export interface WgDeviceState {
  privateKey: string | undefined;
  listenPort: number;
  peers: Map<string, WgPeerState>;
}

export interface WgPeerState {
  presharedKey: string | undefined;
  /** As wg prints it: `10.0.0.1:51820`, `[fd00::1]:51821`; undefined when none. */
  endpoint: string | undefined;
  /** Sorted, as CIDR text. */
  allowedIps: string[];
  keepaliveSeconds: number;
  latestHandshake: number;
}

const none = (s: string | undefined): string | undefined => (s === undefined || s === "(none)" ? undefined : s);

/** Parses `wg show <dev> dump`: the device's line (private key, public key, port, fwmark), then one line per peer. */
export function parseWgDump(text: string): WgDeviceState {
  const lines = text.split("\n").filter((l) => l.length > 0);
  const head = (lines[0] ?? "").split("\t");
  const peers = new Map<string, WgPeerState>();
  for (const line of lines.slice(1)) {
    const [key, psk, endpoint, allowed, handshake, , , keepalive] = line.split("\t");
    if (!key) continue;
    peers.set(key, {
      presharedKey: none(psk),
      endpoint: none(endpoint),
      allowedIps: allowed && allowed !== "(none)" ? allowed.split(",").sort() : [],
      keepaliveSeconds: keepalive && keepalive !== "off" ? Number(keepalive) : 0,
      latestHandshake: Number(handshake ?? 0),
    });
  }
  return { privateKey: none(head[0]), listenPort: Number(head[2] ?? 0), peers };
}

export async function wgShow(dev: string): Promise<WgDeviceState> {
  const r = await run("wg", ["show", dev, "dump"]);
  if (r.code !== 0) throw new Error(`wg show ${dev} dump failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return parseWgDump(r.stdout);
}

/** `wg set <dev> <args>`; secrets go through files the args name, never the command line. */
export async function wgSet(dev: string, args: readonly string[]): Promise<void> {
  const r = await run("wg", ["set", dev, ...args]);
  if (r.code !== 0) throw new Error(`wg set ${dev} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
}
