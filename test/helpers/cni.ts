/**
 * Drives the built sluice-cni exactly as a container runtime does: the plugin runs in a
 * node namespace (`ip netns exec <node> node dist/bin/sluice-cni.js`), CNI_* in its
 * environment, the network config on stdin. The node namespace has an "external"
 * neighbour namespace (for hostPort and routed-traffic tests) and a subnet.env of its own.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { binPath } from "../../src/sandbox/paths.js";
import { ip, nsExec } from "../../src/sandbox/netns.js";
import { makeNetns, removeNetnsWithPrefix } from "./netns.js";

export interface CniCall {
  command: string;
  containerId?: string;
  /** A namespace name (made into /var/run/netns/<name>) or a path. */
  netns?: string;
  ifName?: string;
  args?: string;
  /** The network config; an object is serialized, a string is sent as is. */
  conf: Record<string, unknown> | string;
  env?: Record<string, string>;
  /** The plugin's executable (default: node and the built dist/bin/sluice-cni.js). */
  plugin?: string;
}

export interface CniReply {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed, when it is JSON. */
  json: Record<string, unknown> | undefined;
  ms: number;
}

export const netnsPath = (ns: string): string => (ns.startsWith("/") ? ns : `/var/run/netns/${ns}`);

/** Runs the plugin in `nodeNs`, as the runtime would. */
export async function invokeCni(nodeNs: string, c: CniCall): Promise<CniReply> {
  const env: Record<string, string> = { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin", CNI_COMMAND: c.command, CNI_PATH: "/usr/lib/cni", ...(c.env ?? {}) };
  if (c.containerId !== undefined) env["CNI_CONTAINERID"] = c.containerId;
  if (c.netns !== undefined) env["CNI_NETNS"] = c.netns === "" ? "" : netnsPath(c.netns);
  if (c.ifName !== undefined) env["CNI_IFNAME"] = c.ifName;
  if (c.args !== undefined) env["CNI_ARGS"] = c.args;
  const input = typeof c.conf === "string" ? c.conf : JSON.stringify(c.conf);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", nodeNs, ...(c.plugin ? [c.plugin] : [process.execPath, binPath("sluice-cni")])], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? -1, stdout, stderr, json, ms: performance.now() - started });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(input);
  });
}

/** The first address of an ADD's result, without its prefix length. */
export const podIp = (r: CniReply): string => ((r.json?.["ips"] as Array<{ address: string }>)[0]?.address ?? "").split("/")[0] as string;

export const podArgs = (namespace: string, pod: string): string => `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${pod};K8S_POD_INFRA_CONTAINER_ID=x`;

export interface CniNode {
  prefix: string;
  /** The node's network namespace (the plugin runs here). */
  ns: string;
  /** A neighbour namespace linked to the node: 198.18.<k>.2, the node is 198.18.<k>.1. */
  ext: string;
  nodeIp: string;
  extIp: string;
  dir: string;
  subnetFile: string;
  dataDir: string;
  /** A netconf for this node (cniVersion 1.1.0, name "sluice"), merged with `extra`. */
  conf(extra?: Record<string, unknown>): Record<string, unknown>;
  writeSubnetEnv(lines: Record<string, string | number | boolean>): void;
  /** A fresh pod namespace (removed with the node); an existing one of that name is replaced. */
  pod(name: string): Promise<string>;
  /** The namespace name pod(name) made. */
  podNs(name: string): string;
  /** Allocation files of a network (IP addresses only). */
  allocations(network?: string): string[];
  /** Names of the links in a namespace. */
  links(ns?: string): Promise<string[]>;
  add(podNs: string, containerId: string, pod: string, extra?: Partial<CniCall>): Promise<CniReply>;
  del(podNs: string, containerId: string, pod: string, extra?: Partial<CniCall>): Promise<CniReply>;
  destroy(): Promise<void>;
}

/** A node namespace with forwarding on, an address and an external neighbour; `k` picks 198.18.<k>.0/24. */
export async function makeCniNode(prefix: string, k = 1, subnet = "10.244.7.1/24"): Promise<CniNode> {
  const ns = await makeNetns(`${prefix}-node`);
  const ext = await makeNetns(`${prefix}-ext`);
  const nodeIp = `198.18.${k}.1`;
  const extIp = `198.18.${k}.2`;
  await ip("link", "add", "ext0", "netns", ns, "type", "veth", "peer", "name", "eth0", "netns", ext);
  await ip("-n", ns, "addr", "add", `${nodeIp}/24`, "dev", "ext0");
  await ip("-n", ns, "link", "set", "ext0", "up");
  await ip("-n", ext, "addr", "add", `${extIp}/24`, "dev", "eth0");
  await ip("-n", ext, "link", "set", "eth0", "up");
  await ip("-n", ext, "route", "add", "default", "via", nodeIp);
  await nsExec(ns, "sysctl", ["-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
  const dir = mkdtempSync(join(tmpdir(), "sluice-cni-"));
  const subnetFile = join(dir, "run", "subnet.env");
  const dataDir = join(dir, "ipam");
  mkdirSync(join(dir, "run"), { recursive: true });
  const node: CniNode = {
    prefix,
    ns,
    ext,
    nodeIp,
    extIp,
    dir,
    subnetFile,
    dataDir,
    conf: (extra = {}) => ({ cniVersion: "1.1.0", name: "sluice", type: "sluice", subnetFile, dataDir, nodeName: `${prefix}-node`, logLevel: "debug", ...extra }),
    writeSubnetEnv: (lines) => writeFileSync(subnetFile, Object.entries(lines).map(([key, v]) => `${key}=${v}`).join("\n") + "\n"),
    pod: async (name) => makeNetns(`${prefix}-p-${name}`),
    podNs: (name) => `${prefix}-p-${name}`,
    allocations: (network = "sluice") => {
      try {
        return readdirSync(join(dataDir, network)).filter((f) => /^[0-9a-f.:]+$/.test(f) && /[.:]/.test(f)).sort();
      } catch {
        return [];
      }
    },
    links: async (target = ns) => {
      const r = await run("ip", ["-n", target, "-j", "link", "show"]);
      return (JSON.parse(r.stdout || "[]") as Array<{ ifname: string }>).map((l) => l.ifname).sort();
    },
    add: (podNs, containerId, pod, extra = {}) => invokeCni(ns, { command: "ADD", containerId, netns: podNs, ifName: "eth0", args: podArgs("ns1", pod), conf: node.conf(), ...extra }),
    del: (podNs, containerId, pod, extra = {}) => invokeCni(ns, { command: "DEL", containerId, netns: podNs, ifName: "eth0", args: podArgs("ns1", pod), conf: node.conf(), ...extra }),
    destroy: async () => {
      await removeNetnsWithPrefix(`${prefix}-`);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  node.writeSubnetEnv({ FLANNEL_NETWORK: "10.244.0.0/16", FLANNEL_SUBNET: subnet, FLANNEL_MTU: 1450, FLANNEL_IPMASQ: true });
  return node;
}

const ECHO_JS = `
const net = require("net");
net.createServer((s) => { s.on("data", (d) => s.write(d)); s.on("error", () => {}); }).listen(Number(process.argv[1]), "::");
`;

/** A TCP echo server inside a namespace (it dies with the namespace's processes). */
export async function startEcho(ns: string, port: number): Promise<void> {
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", ECHO_JS, String(port)], { stdio: "ignore", detached: true });
  child.unref();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const r = await run("ip", ["netns", "exec", ns, "ss", "-Hltn", `sport = :${port}`]);
    if (r.stdout.trim()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`echo server in ${ns} did not listen on ${port}`);
}

const PROBE_JS = `
const net = require("net");
const [host, port] = [process.argv[1], Number(process.argv[2])];
const s = net.connect({ host, port });
const t = setTimeout(() => { console.log("timeout"); process.exit(2); }, 3000);
s.on("connect", () => s.write("ping"));
s.on("data", () => { clearTimeout(t); console.log("connected"); s.destroy(); process.exit(0); });
s.on("error", (e) => { clearTimeout(t); console.log(e.code || e.message); process.exit(1); });
`;

/** One TCP connection with an echo round trip from `ns` to host:port. */
export async function tcpReach(ns: string, host: string, port: number): Promise<boolean> {
  const r = await run("ip", ["netns", "exec", ns, process.execPath, "-e", PROBE_JS, host, String(port)], undefined, 10_000);
  return r.code === 0;
}

export async function pingFrom(ns: string, host: string): Promise<boolean> {
  const r = await run("ip", ["netns", "exec", ns, "ping", "-c", "1", "-W", "2", host], undefined, 10_000);
  return r.code === 0;
}

/** A network configuration list (.conflist), as a runtime reads it from /etc/cni/net.d. */
export interface ConfList {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown> & { type: string; capabilities?: Record<string, boolean> }>;
}

export interface ChainCall {
  containerId: string;
  netns: string;
  ifName: string;
  args: string;
  /** Capability arguments (portMappings, ...), given only to plugins that declare the capability. */
  capabilityArgs?: Record<string, unknown>;
}

/** The plugin binary for a conflist `type`: ours (the bundle, run by node) or a reference plugin. */
function pluginInvocation(type: string): { cmd: string; args: string[] } {
  return type === "sluice" ? { cmd: process.execPath, args: [binPath("sluice-cni")] } : { cmd: join("/usr/lib/cni", type), args: [] };
}

async function invokePlugin(nodeNs: string, command: string, call: ChainCall, conf: Record<string, unknown>): Promise<CniReply> {
  const p = pluginInvocation(String(conf["type"]));
  const env: Record<string, string> = {
    PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_COMMAND: command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: netnsPath(call.netns),
    CNI_IFNAME: call.ifName,
    CNI_ARGS: call.args,
    CNI_PATH: "/usr/lib/cni",
  };
  const started = performance.now();
  const r = await run("ip", ["netns", "exec", nodeNs, "env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), p.cmd, ...p.args], JSON.stringify(conf));
  let json: Record<string, unknown> | undefined;
  try {
    json = r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { ...r, json, ms: performance.now() - started };
}

/**
 * Runs a conflist the way libcni does: each plugin gets the list's name and cniVersion,
 * its declared capabilities' arguments under runtimeConfig, and the previous result.
 * ADD runs in order (returning the final result), DEL in reverse, CHECK in order; DEL
 * and CHECK get the cached ADD result as prevResult.
 */
export async function runConfList(nodeNs: string, list: ConfList, command: "ADD" | "DEL" | "CHECK", call: ChainCall, cached?: Record<string, unknown>): Promise<{ result: Record<string, unknown> | undefined; failed?: CniReply }> {
  const confOf = (plugin: ConfList["plugins"][number], prev: Record<string, unknown> | undefined): Record<string, unknown> => {
    const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
    const runtimeConfig: Record<string, unknown> = {};
    for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) if (on && call.capabilityArgs?.[cap] !== undefined) runtimeConfig[cap] = call.capabilityArgs[cap];
    if (Object.keys(runtimeConfig).length) conf["runtimeConfig"] = runtimeConfig;
    if (prev) conf["prevResult"] = prev;
    return conf;
  };
  const plugins = command === "DEL" ? [...list.plugins].reverse() : list.plugins;
  let prev = command === "ADD" ? undefined : cached;
  for (const plugin of plugins) {
    const r = await invokePlugin(nodeNs, command, call, confOf(plugin, prev));
    if (r.code !== 0) return { result: undefined, failed: r };
    if (command === "ADD") prev = r.json;
  }
  return { result: prev };
}
