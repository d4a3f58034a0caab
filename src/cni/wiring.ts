/**
 * The pod's wiring, Canal/Calico style, no bridge: a veth pair per pod; the host end
 * (hostIfaceName(ns, pod), MAC ee:ee:ee:ee:ee:ee, proxy ARP, strict rp_filter, a /32 and
 * /128 route to the pod) stays in the node's namespace, the pod end (CNI_IFNAME) gets the pod's /32 (/128)
 * and a default route via a link-local gateway that only exists as the host end's MAC.
 *
 * The plugin runs in the node's namespace. The host side is one `ip -batch` there; the
 * pod side is one `nsenter --net=<netns> ip -batch -`; the sysctls are plain file writes.
 * The batch builders are pure; the rest is the kernel shell of the plugin. Commands run
 * with spawnSync: a plugin process does one thing at a time, and a synchronous spawn
 * costs a fraction of an asynchronous one (no pipe streams to set up).
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { CNI_ERR, CniError } from "./errors.js";

export const GATEWAY_V4 = "169.254.1.1";
export const HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee";
/** The EUI-64 link-local address of HOST_VETH_MAC, set explicitly on every host veth (as Calico does). */
export const GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee";
/**
 * Host veths carry "sluice/<network>/<containerId>/<ifName>/<namespace>/<pod>" as their
 * alias: who owns them, for DEL and GC, and which pod, so that an ADD replaces a host veth
 * of its name only for the same pod (host veth names are a 48-bit hash of the pod's name:
 * two pods can collide, and a tenant can make them). Older plugins wrote the first four
 * parts only.
 */
export const ALIAS_PREFIX = "sluice/";
/** The kernel keeps at most this many bytes of an alias (IFALIASZ - 1). */
export const MAX_ALIAS_BYTES = 255;
/** A pod name longer than this is written as "~" + a hash of it, so that every alias fits. */
const MAX_LITERAL_POD = 100;

/**
 * Everything that goes into an `ip -batch` line: no white space (argument breaks), '#'
 * (comment), quotes or backslashes (grouping, escapes). Names are checked where they
 * enter (env.ts, the netconf); this is the last line of defence, so that an unchecked
 * name fails the call instead of cutting a line short.
 */
const BATCH_TOKEN = /^[A-Za-z0-9_./:@+,=~-]+$/;

function batchToken(value: string, what: string): string {
  if (!BATCH_TOKEN.test(value)) throw new CniError(CNI_ERR.invalidEnv, `${what} ${JSON.stringify(value)} cannot go into an ip -batch line`);
  return value;
}

export interface WiringPlan {
  network: string;
  containerId: string;
  /** The pod's identity (CNI_ARGS), for the host veth's alias. */
  pod: { namespace: string; pod: string };
  /** The pod's network namespace (a path). */
  netns: string;
  podIface: string;
  hostIface: string;
  podMac: string;
  mtu: number;
  /** The pod's addresses, without prefix length. */
  ipv4: string | undefined;
  ipv6: string | undefined;
}

/** The pod as the alias names it: "<namespace>/<pod>", a long pod name hashed (names hold no '~'). */
export function podToken(namespace: string, pod: string): string {
  const name = pod.length <= MAX_LITERAL_POD ? pod : `~${createHash("sha256").update(pod).digest("hex").slice(0, 40)}`;
  return `${namespace}/${name}`;
}

export const ownerAlias = (network: string, containerId: string, ifName: string, pod: { namespace: string; pod: string }): string =>
  `${ALIAS_PREFIX}${network}/${containerId}/${ifName}/${podToken(pod.namespace, pod.pod)}`;

export interface AliasOwner {
  network: string;
  containerId: string;
  ifName: string;
  /** podToken() of the pod; undefined in an alias an older plugin wrote. */
  pod: string | undefined;
}

export function parseOwnerAlias(alias: string | undefined): AliasOwner | undefined {
  if (!alias?.startsWith(ALIAS_PREFIX)) return undefined;
  const parts = alias.slice(ALIAS_PREFIX.length).split("/");
  if ((parts.length !== 3 && parts.length !== 5) || parts.some((p) => p === "")) return undefined;
  const [network, containerId, ifName, namespace, pod] = parts as [string, string, string, string?, string?];
  return { network, containerId, ifName, pod: namespace !== undefined && pod !== undefined ? `${namespace}/${pod}` : undefined };
}

/**
 * A random locally administered unicast MAC for the pod end (so ADD need not ask the
 * kernel for it). Each pod end is alone on its link, so a repeat would do no harm.
 */
export function randomPodMac(): string {
  const b = Array.from({ length: 6 }, () => Math.floor(Math.random() * 256));
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

const CMD_TIMEOUT_MS = 20_000;

export function runCmd(cmd: string, args: readonly string[], input = ""): CmdResult {
  const r = spawnSync(cmd, args, { input, encoding: "utf8", timeout: CMD_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) return { code: -1, stdout: r.stdout ?? "", stderr: `${cmd}: ${r.error.message}` };
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Node side: the pair (pod end created directly in the pod's namespace), owner alias, routes to the pod. */
export function hostBatch(p: WiringPlan): string[] {
  const alias = ownerAlias(p.network, p.containerId, p.podIface, p.pod);
  if (Buffer.byteLength(alias) > MAX_ALIAS_BYTES) throw new CniError(CNI_ERR.invalidNetConf, `the host interface's alias ${alias} is longer than the kernel keeps (${MAX_ALIAS_BYTES} bytes): shorten the network name`);
  const host = batchToken(p.hostIface, "host interface");
  const lines = [
    `link add ${host} mtu ${p.mtu} address ${HOST_VETH_MAC} up type veth peer name ${batchToken(p.podIface, "CNI_IFNAME")} mtu ${p.mtu} address ${batchToken(p.podMac, "MAC")} netns ${batchToken(p.netns, "CNI_NETNS")}`,
    // No kernel-made IPv6 link-local address: we set GATEWAY_V6 ourselves, without DAD, so it works at once.
    `link set ${host} alias ${batchToken(alias, "alias")}${p.ipv6 ? " addrgenmode none" : ""}`,
  ];
  if (p.ipv4) lines.push(`route add ${p.ipv4}/32 dev ${p.hostIface} scope link`);
  if (p.ipv6) lines.push(`addr add ${GATEWAY_V6}/64 dev ${p.hostIface} nodad`, `route add ${p.ipv6}/128 dev ${p.hostIface}`);
  return lines;
}

/** Pod side: address(es), the link-local gateway (a permanent neighbour, so no ARP/ND is needed for it), default routes. */
export function podBatch(p: WiringPlan): string[] {
  batchToken(p.podIface, "CNI_IFNAME");
  const lines = [`link set ${p.podIface} up`];
  if (p.ipv4) {
    lines.push(
      `addr add ${p.ipv4}/32 dev ${p.podIface}`,
      `neigh replace ${GATEWAY_V4} lladdr ${HOST_VETH_MAC} dev ${p.podIface} nud permanent`,
      `route add ${GATEWAY_V4} dev ${p.podIface} scope link`,
      `route add default via ${GATEWAY_V4} dev ${p.podIface}`,
    );
  }
  if (p.ipv6) {
    lines.push(
      `addr add ${p.ipv6}/128 dev ${p.podIface} nodad`,
      `neigh replace ${GATEWAY_V6} lladdr ${HOST_VETH_MAC} dev ${p.podIface} nud permanent`,
      `route add default via ${GATEWAY_V6} dev ${p.podIface}`,
    );
  }
  return lines;
}

/** Which batch line failed ("Command failed -:3"), 0 when unknown. */
function failedLine(stderr: string): number {
  const m = /Command failed -:(\d+)/.exec(stderr);
  return m ? Number(m[1]) : 0;
}

const cleanErr = (stderr: string): string =>
  stderr
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith("Command failed"))
    .join("; ");

/** True when a link of that name exists in our (the node's) namespace: /proc/sys/net follows the caller's namespace. */
export function hostLinkExists(name: string): boolean {
  return existsSync(`/proc/sys/net/ipv4/conf/${name}`) || existsSync(`/proc/sys/net/ipv6/conf/${name}`);
}

export interface HostLink {
  name: string;
  alias: string | undefined;
  up: boolean;
  mtu: number;
  mac: string | undefined;
}

interface IpLinkJson {
  ifname: string;
  ifalias?: string;
  flags?: string[];
  mtu?: number;
  address?: string;
}

const toHostLink = (l: IpLinkJson): HostLink => ({ name: l.ifname, alias: l.ifalias, up: (l.flags ?? []).includes("UP"), mtu: l.mtu ?? 0, mac: l.address });

export function getHostLink(name: string): HostLink | undefined {
  const r = runCmd("ip", ["-j", "link", "show", "dev", name]);
  if (r.code !== 0) return undefined;
  const links = JSON.parse(r.stdout || "[]") as IpLinkJson[];
  return links[0] ? toHostLink(links[0]) : undefined;
}

/** Every veth in the node's namespace whose alias says Sluice made it. */
export function listOwnedHostVeths(): Array<HostLink & { owner: AliasOwner }> {
  const r = runCmd("ip", ["-j", "link", "show", "type", "veth"]);
  if (r.code !== 0) throw new CniError(CNI_ERR.io, `listing veths failed: ${r.stderr.trim()}`);
  const out = [];
  for (const l of JSON.parse(r.stdout || "[]") as IpLinkJson[]) {
    const owner = parseOwnerAlias(l.ifalias);
    if (owner) out.push({ ...toHostLink(l), owner });
  }
  return out;
}

export function deleteHostLinks(names: readonly string[]): void {
  if (names.length === 0) return;
  // -force: keep going past a link that vanished meanwhile.
  runCmd("ip", ["-force", "-batch", "-"], names.map((n) => `link del ${n}`).join("\n") + "\n");
}

function writeSysctlIfPresent(path: string, value: string): void {
  try {
    writeFileSync(`/proc/sys/${path}`, value);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/**
 * Wires the pod. On failure everything this call created is removed again and a
 * CniError (code 102) says which step failed.
 */
export function wirePod(p: WiringPlan): void {
  const host = runCmd("ip", ["-batch", "-"], hostBatch(p).join("\n") + "\n");
  if (host.code !== 0) {
    // Line 1 creates the pair; a failure there created nothing (and must not delete a link someone else owns).
    if (failedLine(host.stderr) !== 1) deleteHostLinks([p.hostIface]);
    throw new CniError(CNI_ERR.wiring, `wiring the host side (${p.hostIface}) failed: ${cleanErr(host.stderr)}`, host.stderr.trim());
  }
  try {
    if (p.ipv4) {
      writeFileSync(`/proc/sys/net/ipv4/conf/${p.hostIface}/proxy_arp`, "1");
      // Strict reverse-path filtering, as Felix sets on workload interfaces: the kernel drops
      // an IPv4 packet whose source is not routed back through this veth. The agent's raw-table
      // source check is the rule that holds for both families (IPv6 has no rp_filter); this is
      // the kernel's own second line. The effective value is the larger of this and conf/all.
      writeFileSync(`/proc/sys/net/ipv4/conf/${p.hostIface}/rp_filter`, "1");
      // Answer ARP at once, not after a random delay of up to 0.8 s.
      writeSysctlIfPresent(`net/ipv4/neigh/${p.hostIface}/proxy_delay`, "0");
    }
    if (p.ipv6) writeSysctlIfPresent(`net/ipv6/conf/${p.hostIface}/accept_ra`, "0");
    const pod = runCmd("nsenter", [`--net=${p.netns}`, "ip", "-batch", "-"], podBatch(p).join("\n") + "\n");
    if (pod.code !== 0) throw new CniError(CNI_ERR.wiring, `wiring the pod side (${p.podIface} in ${p.netns}) failed: ${cleanErr(pod.stderr)}`, pod.stderr.trim());
  } catch (err) {
    deleteHostLinks([p.hostIface]);
    if (err instanceof CniError) throw err;
    throw new CniError(CNI_ERR.wiring, `wiring ${p.hostIface} failed: ${(err as Error).message}`);
  }
}

/** Deletes the pod end inside the pod's namespace (which takes the host end with it). False when there was none. */
export function deletePodIface(netns: string, ifName: string): boolean {
  if (!existsSync(netns)) return false;
  const r = runCmd("nsenter", [`--net=${netns}`, "ip", "link", "del", ifName]);
  return r.code === 0;
}

export function readProxyArp(hostIface: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/net/ipv4/conf/${hostIface}/proxy_arp`, "utf8").trim();
  } catch {
    return undefined;
  }
}

interface IpAddrJson extends IpLinkJson {
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}

export interface RouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  scope?: string;
  table?: string;
  type?: string;
}

/** Runs `ip -j -batch -` (in `netns` if given) and returns one parsed JSON array per line, or the error. */
function ipJsonBatch(lines: string[], netns?: string): { ok: true; outputs: unknown[][] } | { ok: false; error: string } {
  const cmd = netns ? "nsenter" : "ip";
  const args = netns ? [`--net=${netns}`, "ip", "-j", "-batch", "-"] : ["-j", "-batch", "-"];
  const r = runCmd(cmd, args, lines.join("\n") + "\n");
  if (r.code !== 0) return { ok: false, error: cleanErr(r.stderr) || `exit ${r.code}` };
  const outputs = r.stdout
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as unknown[]);
  return { ok: true, outputs };
}

export interface PodSideState {
  link: HostLink;
  addresses: string[];
  routes: RouteJson[];
}

/** What the pod end looks like inside the pod's namespace; a string says why it could not be read. */
export function inspectPodSide(netns: string, ifName: string): PodSideState | string {
  if (!existsSync(netns)) return `network namespace ${netns} does not exist`;
  const r = ipJsonBatch([`addr show dev ${ifName}`, "route show table all"], netns);
  if (!r.ok) return `interface ${ifName} in ${netns}: ${r.error}`;
  const [addrs = [], routes = []] = r.outputs as [IpAddrJson[], RouteJson[]];
  const l = addrs[0];
  if (!l) return `interface ${ifName} not found in ${netns}`;
  return { link: toHostLink(l), addresses: (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`), routes: routes.filter((x) => x.table === undefined || x.table === "main") };
}

export interface HostSideState {
  link: HostLink;
  routes: RouteJson[];
}

export function inspectHostSide(hostIface: string): HostSideState | string {
  const r = ipJsonBatch([`link show dev ${hostIface}`, `route show table all dev ${hostIface}`]);
  if (!r.ok) return `host interface ${hostIface}: ${r.error}`;
  const [links = [], routes = []] = r.outputs as [IpLinkJson[], RouteJson[]];
  const l = links[0];
  if (!l) return `host interface ${hostIface} not found`;
  return { link: toHostLink(l), routes: routes.filter((x) => x.table === undefined || x.table === "main") };
}
