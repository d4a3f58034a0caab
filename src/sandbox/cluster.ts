/**
 * A cluster on one Linux host, built only from network namespaces: an underlay
 * namespace that holds the L2 segment bridges (and routes between segments, so it is
 * also the router when there are two), one namespace per node, a real etcd, and a
 * real sluice-agent per node. Nothing is created in the host's own namespace, and no
 * namespace has a route to the host's interfaces.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { binPath } from "./paths.js";
import { run } from "../dataplane/exec.js";
import { Etcd3 } from "etcd3";
import { startEtcd, type EtcdServer } from "./etcdServer.js";
import { addNetns, delNetns, ip, listNetns, netnsPids, nsExec } from "./netns.js";

export type SandboxBackend = "vxlan" | "host-gw" | "vxlan-direct";

export interface SandboxOptions {
  /** Short id; every namespace is named `<prefix>-...`. */
  prefix: string;
  stateDir: string;
  nodes: number;
  backend: SandboxBackend;
  segments: 1 | 2;
  network?: string;
  ipMasq?: boolean;
  /** Extra flags for every agent. */
  agentArgs?: string[];
  /** The agent entry point (built bundle). */
  agentBin?: string;
  /** Set the nodes' FORWARD policy to DROP before the agents start, as Docker >= 1.13 does. */
  forwardDrop?: boolean;
  detached?: boolean;
  /** Dual stack: IPv6 underlay addresses and an IPv6 cluster network too. */
  ipv6?: boolean;
}

export interface SandboxNode {
  name: string;
  index: number;
  ns: string;
  segment: number;
  address: string;
  stateDir: string;
}


export function underlayAddress(segment: number, host: number): string {
  return `10.250.${segment}.${host}`;
}

export function underlayAddress6(segment: number, host: number): string {
  return `fd00:250:${segment}::${host.toString(16)}`;
}

export function networkConfigFor(backend: SandboxBackend, network = "10.244.0.0/16", ipv6 = false): string {
  const b = backend === "host-gw" ? { Type: "host-gw" } : backend === "vxlan-direct" ? { Type: "vxlan", DirectRouting: true } : { Type: "vxlan" };
  return JSON.stringify({ Network: network, ...(ipv6 ? { EnableIPv6: true, IPv6Network: "fd00:244::/56" } : {}), Backend: b });
}

export class Sandbox {
  readonly underlayNs: string;
  readonly nodes: SandboxNode[] = [];
  etcd: EtcdServer | undefined;
  private readonly agents = new Map<string, ChildProcess>();

  constructor(readonly o: SandboxOptions) {
    this.underlayNs = `${o.prefix}-underlay`;
  }

  get etcdEndpoint(): string {
    if (!this.etcd) throw new Error("sandbox etcd is not running");
    return this.etcd.endpoint;
  }

  nodeByName(name: string): SandboxNode {
    const n = this.nodes.find((x) => x.name === name || String(x.index) === name);
    if (!n) throw new Error(`no node ${name} in the sandbox (have ${this.nodes.map((x) => x.name).join(", ")})`);
    return n;
  }

  async up(): Promise<void> {
    const o = this.o;
    mkdirSync(o.stateDir, { recursive: true });
    await addNetns(this.underlayNs);
    await nsExec(this.underlayNs, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    for (let s = 1; s <= o.segments; s++) {
      await ip("-n", this.underlayNs, "link", "add", `br${s}`, "type", "bridge");
      await ip("-n", this.underlayNs, "addr", "add", `${underlayAddress(s, 1)}/24`, "dev", `br${s}`);
      if (o.ipv6) await ip("-n", this.underlayNs, "addr", "add", `${underlayAddress6(s, 1)}/64`, "dev", `br${s}`, "nodad");
      await ip("-n", this.underlayNs, "link", "set", `br${s}`, "up");
    }
    if (o.ipv6) await nsExec(this.underlayNs, "sysctl", ["-qw", "net.ipv6.conf.all.forwarding=1"]);
    this.etcd = await startEtcd({ dir: join(o.stateDir, "etcd"), detached: o.detached ?? false });
    await this.putNetworkConfig(networkConfigFor(o.backend, o.network, o.ipv6 ?? false));
    for (let i = 1; i <= o.nodes; i++) await this.addNode();
  }

  async putNetworkConfig(json: string): Promise<void> {
    const c = new Etcd3({ hosts: [this.etcdEndpoint] });
    try {
      await c.put("/coreos.com/network/config").value(json);
    } finally {
      c.close();
    }
  }

  /** Adds a node (namespace, underlay link, agent); segments alternate when there are two. */
  async addNode(): Promise<SandboxNode> {
    const index = this.nodes.length ? Math.max(...this.nodes.map((n) => n.index)) + 1 : 1;
    const segment = this.o.segments === 2 ? ((index - 1) % 2) + 1 : 1;
    const node: SandboxNode = { name: `node-${index}`, index, ns: `${this.o.prefix}-node-${index}`, segment, address: underlayAddress(segment, 10 + index), stateDir: join(this.o.stateDir, `node-${index}`) };
    mkdirSync(node.stateDir, { recursive: true });
    await addNetns(node.ns);
    const hostSide = `n${index}`;
    await ip("link", "add", "eth0", "netns", node.ns, "type", "veth", "peer", "name", hostSide, "netns", this.underlayNs);
    await ip("-n", this.underlayNs, "link", "set", hostSide, "master", `br${segment}`, "up");
    await ip("-n", node.ns, "addr", "add", `${node.address}/24`, "dev", "eth0");
    await ip("-n", node.ns, "link", "set", "eth0", "up");
    await ip("-n", node.ns, "route", "add", "default", "via", underlayAddress(segment, 1));
    if (this.o.ipv6) {
      await ip("-n", node.ns, "addr", "add", `${underlayAddress6(segment, 10 + index)}/64`, "dev", "eth0", "nodad");
      await ip("-n", node.ns, "-6", "route", "add", "default", "via", underlayAddress6(segment, 1));
    }
    if (this.o.forwardDrop ?? true) await nsExec(node.ns, "iptables", ["-P", "FORWARD", "DROP"]);
    this.nodes.push(node);
    await this.startAgent(node);
    return node;
  }

  agentArgs(node: SandboxNode): string[] {
    return [
      "--etcd-endpoints", this.etcdEndpoint,
      "--iface", "eth0",
      "--node-name", node.name,
      "--subnet-file", join(node.stateDir, "subnet.env"),
      "--healthz-ip", "127.0.0.1",
      "--healthz-port", "9099",
      "--iptables-resync", "1",
      "--route-resync", "1",
      "--policy-resync", "1",
      ...(this.o.ipMasq ?? true ? ["--ip-masq"] : []),
      ...(this.o.agentArgs ?? []),
    ];
  }

  async startAgent(node: SandboxNode): Promise<void> {
    const bin = this.o.agentBin ?? binPath("sluice-agent");
    const logFd = openSync(join(node.stateDir, "agent.log"), "a");
    const child = spawn("ip", ["netns", "exec", node.ns, process.execPath, bin, ...this.agentArgs(node)], { stdio: ["ignore", logFd, logFd], detached: this.o.detached ?? false, env: { ...process.env, NODE_NAME: node.name } });
    closeSync(logFd);
    if (this.o.detached) child.unref();
    writeFileSync(join(node.stateDir, "agent.pid"), String(child.pid));
    this.agents.set(node.name, child);
  }

  /** Stops a node's agent with SIGTERM (graceful: the dataplane stays). */
  async stopAgent(node: SandboxNode, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const pid = readPid(join(node.stateDir, "agent.pid"));
    const child = this.agents.get(node.name);
    this.agents.delete(node.name);
    for (const p of await netnsPids(node.ns)) {
      try {
        process.kill(p, signal);
      } catch {
        /* already gone */
      }
    }
    if (child && child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          child.kill("SIGKILL");
          r();
        }, 5000);
        child.once("exit", () => {
          clearTimeout(t);
          r();
        });
      });
    } else if (pid) {
      await waitGone(pid, 5000);
    }
  }

  /** Removes a node: its agent, its namespace, its underlay link. Its lease stays until it expires or is deleted. */
  async removeNode(node: SandboxNode): Promise<void> {
    await this.stopAgent(node, "SIGKILL");
    await killNetnsProcesses(node.ns);
    await delNetns(node.ns);
    this.nodes.splice(this.nodes.indexOf(node), 1);
  }

  async waitReady(node: SandboxNode, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await run("ip", ["netns", "exec", node.ns, "curl", "-sf", "--max-time", "1", "http://127.0.0.1:9099/readyz"], undefined, 5000);
      if (r.code === 0) return;
      if (Date.now() > deadline) {
        const log = existsSync(join(node.stateDir, "agent.log")) ? readFileSync(join(node.stateDir, "agent.log"), "utf8").split("\n").slice(-20).join("\n") : "";
        throw new Error(`agent on ${node.name} not ready after ${timeoutMs}ms; last log lines:\n${log}`);
      }
      await new Promise((r2) => setTimeout(r2, 200));
    }
  }

  async waitAllReady(timeoutMs = 30_000): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.waitReady(n, timeoutMs)));
  }

  async down(): Promise<void> {
    await teardown(this.o.prefix, this.o.stateDir);
    await this.etcd?.stop();
  }
}

function readPid(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function isOurs(pid: number, stateDir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").some((arg) => arg.startsWith(stateDir));
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}

async function killNetnsProcesses(ns: string): Promise<void> {
  const pids = await netnsPids(ns);
  for (const p of pids) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  for (const p of pids) await waitGone(p, 2000);
}

/**
 * Removes everything a sandbox with this prefix made: processes in its namespaces,
 * the namespaces, etcd, the state directory. Works after a crash too: it finds things
 * by name and pid file, not by memory.
 */
export async function teardown(prefix: string, stateDir: string): Promise<void> {
  const namespaces = (await listNetns()).filter((n) => n.startsWith(`${prefix}-`));
  for (const ns of namespaces) await killNetnsProcesses(ns);
  // Processes we started that may not be inside a namespace (etcd). A pid file can be
  // stale (a reboot, pid reuse): only a process whose command line names our state
  // directory is ours to stop.
  if (existsSync(stateDir)) {
    for (const entry of readdirSync(stateDir)) {
      const pid = readPid(join(stateDir, entry, "agent.pid"));
      if (pid && isOurs(pid, stateDir)) await waitGone(pid, 0);
    }
    const etcdPid = readPid(join(stateDir, "etcd", "etcd.pid"));
    if (etcdPid && isOurs(etcdPid, stateDir)) {
      process.kill(etcdPid, "SIGTERM");
      await waitGone(etcdPid, 3000);
    }
  }
  for (const ns of namespaces) await delNetns(ns);
  rmSync(stateDir, { recursive: true, force: true });
}
