/**
 * Workload endpoints wired by hand, Canal-style (a veth per endpoint, a /32 route and
 * proxy ARP on the node side, a link-local default gateway inside), plus a small TCP
 * echo server and probes. The kernel connectivity tests use these to test the agent on
 * its own, without the CNI plugin; real pods (sluice-cni, pod servers, matrices) are in
 * pods.ts and probe.ts.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { readSubnetEnv } from "../agent/subnetEnv.js";
import { run } from "../dataplane/exec.js";
import { cidrHost, formatIp } from "../model/ip.js";
import type { Sandbox, SandboxNode } from "./cluster.js";
import { addNetns, ip, nsExec } from "./netns.js";

export interface Endpoint {
  name: string;
  node: SandboxNode;
  ns: string;
  ip: string;
  hostIf: string;
}

export const LINK_LOCAL_GW = "169.254.1.1";

export async function addEndpoint(sb: Sandbox, node: SandboxNode, name: string, offset: number): Promise<Endpoint> {
  const env = await readSubnetEnv(join(node.stateDir, "subnet.env"));
  if (!env?.subnet || !env.mtu) throw new Error(`${node.name} has no subnet.env yet`);
  const addr = formatIp(cidrHost(env.subnet, BigInt(offset)));
  const ns = `${sb.o.prefix}-ep-${node.index}-${name}`;
  const hostIf = `ve${node.index}${name}`.slice(0, 15);
  await addNetns(ns);
  await ip("link", "add", "eth0", "netns", ns, "mtu", String(env.mtu), "type", "veth", "peer", "name", hostIf, "netns", node.ns, "mtu", String(env.mtu));
  await ip("-n", ns, "addr", "add", `${addr}/32`, "dev", "eth0");
  await ip("-n", ns, "link", "set", "eth0", "up");
  await ip("-n", ns, "route", "add", LINK_LOCAL_GW, "dev", "eth0", "scope", "link");
  await ip("-n", ns, "route", "add", "default", "via", LINK_LOCAL_GW, "dev", "eth0");
  await nsExec(node.ns, "sysctl", ["-qw", `net.ipv4.conf.${hostIf}.proxy_arp=1`]);
  await ip("-n", node.ns, "link", "set", hostIf, "up");
  await ip("-n", node.ns, "route", "add", `${addr}/32`, "dev", hostIf, "scope", "link");
  return { name, node, ns, ip: addr, hostIf };
}

const SERVER_JS = `
const net = require("net");
const port = Number(process.argv[1]);
net.createServer((s) => { s.on("data", (d) => s.write(d)); s.on("error", () => {}); }).listen(port, "0.0.0.0");
`;

/** Starts a TCP echo server inside the endpoint (it ends when the namespace's processes are killed). */
export function startEchoServer(ep: Endpoint, port: number, logDir: string): void {
  const fd = openSync(join(logDir, `echo-${ep.name}.log`), "a");
  const child = spawn("ip", ["netns", "exec", ep.ns, process.execPath, "-e", SERVER_JS, String(port)], { stdio: ["ignore", fd, fd], detached: true });
  closeSync(fd);
  child.unref();
}

const PROBE_JS = `
const net = require("net");
const [host, port, ms] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const s = net.connect({ host, port });
const t = setTimeout(() => { console.log("timeout"); process.exit(2); }, ms);
s.on("connect", () => s.write("ping"));
s.on("data", () => { clearTimeout(t); console.log("connected"); s.destroy(); process.exit(0); });
s.on("error", (e) => { clearTimeout(t); console.log(e.code || e.message); process.exit(1); });
`;

/** One real TCP connection attempt with an echo round trip. */
export async function tcpProbe(from: { ns: string }, host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  const r = await run("ip", ["netns", "exec", from.ns, process.execPath, "-e", PROBE_JS, host, String(port), String(timeoutMs)], undefined, timeoutMs + 5000);
  return r.code === 0;
}

export async function ping(from: { ns: string }, host: string, opts: { size?: number; dontFragment?: boolean } = {}): Promise<boolean> {
  const args = ["-c", "1", "-W", "2", ...(opts.size ? ["-s", String(opts.size)] : []), ...(opts.dontFragment ? ["-M", "do"] : []), host];
  const r = await run("ip", ["netns", "exec", from.ns, "ping", ...args], undefined, 10_000);
  return r.code === 0;
}

/** Polls until `check` is true or the deadline passes; returns the last result. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 15_000, stepMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
