/**
 * External hosts: machines outside the cluster, on the sandbox's underlay, for proving
 * rules about addresses outside the cluster (a NetworkSet, `networks`, `nets`) with real
 * traffic. Each is a network namespace `<prefix>-ext-<n>` plugged into the first
 * segment's bridge with an address of TEST-NET-3 (203.0.113.0/24, which the underlay
 * namespace also holds on that bridge, so it routes between the nodes and the
 * external hosts). Nothing in it leads to the host's own interfaces.
 *
 * A pod reaching an external host leaves its node masqueraded (the node's address as
 * source), as pod traffic leaving the cluster network does; egress policy has judged it
 * before, on the pod's own address. The host runs the pod server (podServer.ts): it
 * echoes TCP and UDP on its ports and the kernel answers pings. Local facts live in
 * `<state>/external/<name>.json`, as pods' do.
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../config/errors.js";
import { type Sandbox, isOurs } from "./cluster.js";
import { addNetns, delNetns, ip, listNetns, netnsPids, nsTry } from "./netns.js";
import { type ServedPort, spawnPodServer, waitPodServer } from "./podServer.js";
import { readRecords, writeRecordFile } from "./pods.js";

/** TEST-NET-3 (RFC 5737): never routed on the Internet, never a cluster network. */
export const EXTERNAL_NETWORK = "203.0.113.0/24";
export const EXTERNAL_GATEWAY = "203.0.113.1";
export const externalAddress = (index: number): string => `203.0.113.${10 + index}`;

export const DEFAULT_EXTERNAL_PORTS: readonly ServedPort[] = [
  { port: 80, protocol: "TCP" },
  { port: 80, protocol: "UDP" },
  { port: 81, protocol: "TCP" },
  { port: 81, protocol: "UDP" },
];

export interface ExternalHost {
  /** ext-<index>. */
  name: string;
  index: number;
  ns: string;
  address: string;
  ports: ServedPort[];
  serverPid: number;
  ctlSocket: string;
}

const SOURCE = "sluicectl sandbox";
const dirOf = (sb: Sandbox): string => join(sb.o.stateDir, "external");
const recordPath = (sb: Sandbox, name: string): string => join(dirOf(sb), `${name}.json`);
const logPath = (sb: Sandbox, name: string): string => join(dirOf(sb), `${name}.log`);

export function listExternalHosts(sb: Sandbox): ExternalHost[] {
  return readRecords<ExternalHost>(dirOf(sb)).sort((a, b) => a.index - b.index);
}

/** By name (ext-1), number (1) or address. */
export function getExternalHost(sb: Sandbox, ref: string): ExternalHost {
  const all = listExternalHosts(sb);
  const h = all.find((x) => x.name === ref || String(x.index) === ref || x.address === ref);
  if (!h) throw new ConfigError("EXTERNAL", `no external host ${ref} in the sandbox (have: ${all.map((x) => `${x.name} ${x.address}`).join(", ") || "none"})`, SOURCE);
  return h;
}

/** Adds an external host (the next free number) serving `ports`; resolves once it serves. */
export async function addExternalHost(sb: Sandbox, ports: readonly ServedPort[] = DEFAULT_EXTERNAL_PORTS): Promise<ExternalHost> {
  const taken = new Set(listExternalHosts(sb).map((h) => h.index));
  let index = 1;
  while (taken.has(index)) index++;
  if (index > 200) throw new ConfigError("EXTERNAL", "the sandbox numbers at most 200 external hosts", SOURCE);
  const name = `ext-${index}`;
  const host: ExternalHost = { name, index, ns: `${sb.o.prefix}-${name}`, address: externalAddress(index), ports: [...ports], serverPid: 0, ctlSocket: join(sb.o.stateDir, "s", `${name}.sock`) };
  mkdirSync(dirOf(sb), { recursive: true });
  mkdirSync(join(sb.o.stateDir, "s"), { recursive: true });
  // The underlay routes between the nodes' segment and TEST-NET-3 on the first bridge.
  const has = await nsTry(sb.underlayNs, "ip", ["-4", "-o", "addr", "show", "dev", "br1"]);
  if (!has.stdout.includes(` ${EXTERNAL_GATEWAY}/`)) await ip("-n", sb.underlayNs, "addr", "add", `${EXTERNAL_GATEWAY}/24`, "dev", "br1");
  try {
    await addNetns(host.ns);
    await ip("link", "add", "eth0", "netns", host.ns, "type", "veth", "peer", "name", `e${index}`, "netns", sb.underlayNs);
    await ip("-n", sb.underlayNs, "link", "set", `e${index}`, "master", "br1", "up");
    await ip("-n", host.ns, "addr", "add", `${host.address}/24`, "dev", "eth0");
    await ip("-n", host.ns, "link", "set", "eth0", "up");
    await ip("-n", host.ns, "route", "add", "default", "via", EXTERNAL_GATEWAY);
    host.serverPid = spawnPodServer(host.ns, ports, host.ctlSocket, logPath(sb, name));
    await waitPodServer(host.ctlSocket, host.serverPid, logPath(sb, name));
    // Ready when the underlay (the nodes' gateway) reaches it: its bridge port forwards and
    // its address is resolved before the first probe.
    for (let i = 0; ; i++) {
      const r = await nsTry(sb.underlayNs, "ping", ["-n", "-q", "-c", "1", "-W", "1", host.address], 3000);
      if (r.code === 0) break;
      if (i === 4) throw new Error(`external host ${name} (${host.address}) does not answer pings from the underlay: ${r.stdout.trim() || r.stderr.trim()}`);
    }
    writeRecordFile(recordPath(sb, name), host);
    return host;
  } catch (err) {
    await removeParts(sb, host).catch(() => undefined);
    throw err;
  }
}

export async function removeExternalHost(sb: Sandbox, ref: string): Promise<void> {
  await removeParts(sb, getExternalHost(sb, ref));
}

async function removeParts(sb: Sandbox, h: ExternalHost): Promise<void> {
  const exists = (await listNetns()).includes(h.ns);
  const own = h.serverPid && isOurs(h.serverPid, sb.o.stateDir) ? [h.serverPid] : [];
  for (const pid of [...own, ...(exists ? await netnsPids(h.ns) : [])]) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  if (exists) await delNetns(h.ns);
  // The router's entry for the address names the removed host's MAC: a host added again at
  // that address has another, and the stale entry would take seconds to re-resolve.
  await nsTry(sb.underlayNs, "ip", ["neigh", "del", h.address, "dev", "br1"]);
  for (const f of [recordPath(sb, h.name), logPath(sb, h.name), h.ctlSocket]) rmSync(f, { force: true });
}
