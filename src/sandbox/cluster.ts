/**
 * A cluster on one Linux host, built only from network namespaces: an underlay
 * namespace that holds the L2 segment bridges (and routes between segments, so it is
 * also the router when there are two), one namespace per node, a real etcd (client
 * certificates required, as a production etcd should be), and a real sluice-agent per
 * node. Nothing is created in the host's own namespace, and no namespace has a route to
 * the host's interfaces. The state directory is private (stateDir.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { binPath } from "./paths.js";
import { run } from "../dataplane/exec.js";
import type { Etcd3 } from "etcd3";
import { type EtcdConnection, connectEtcd } from "../datastore/etcdClient.js";
import { etcdConnection, etcdFlags, startEtcd, type EtcdServer } from "./etcdServer.js";
import { checkPrivateDir, ensurePrivateDir } from "./stateDir.js";
import { nodeKind } from "../config/resourceKinds.js";
import type { NodeObject } from "../config/policySchemas.js";
import { EtcdResourceStore } from "../datastore/etcdResources.js";
import { addNetns, delNetns, ip, listNetns, netnsPids, nsExec, sandboxNetns } from "./netns.js";
import { EtcdObjects, KubeObjects, type SandboxKubeApi, type SandboxObjects } from "./objects.js";
import { cidr, formatCidr, parseCidr } from "../model/ip.js";

export const SANDBOX_BACKENDS = ["vxlan", "host-gw", "vxlan-direct", "wireguard", "ipip", "udp"] as const;
export type SandboxBackend = (typeof SANDBOX_BACKENDS)[number];

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
  /** The CNI plugin entry point (built bundle). */
  cniBin?: string;
  /** Set the nodes' FORWARD policy to DROP before the agents start, as Docker >= 1.13 does. */
  forwardDrop?: boolean;
  /** Agents and etcd outlive this process (the CLI); always true for a sandbox loaded from its state file. */
  detached?: boolean;
  /** Dual stack: IPv6 underlay addresses and an IPv6 cluster network too. */
  ipv6?: boolean;
  /**
   * Kubernetes mode: starts the API server the agents use (--kube-subnet-mgr), given the
   * underlay namespace and an address of it that every node reaches (a test's fake API
   * server). The sandbox then runs no etcd: it writes Node objects (podCIDR node-k ->
   * <network>.k.0/24) and its Namespaces and Pods there, and the agents read net-conf.json
   * from the state dir. Not kept in the state file: a Kubernetes-mode sandbox lives as long
   * as the process that made it.
   */
  kubeApi?: (netns: string, host: string) => Promise<SandboxKubeApi>;
  /** sluice-cni's policyReadyTimeoutMs for every pod (default 0: no wait). */
  policyReadyTimeoutMs?: number;
}

/**
 * The policy-ready wait the demo and `sandbox up` give their pods: the value the manifests
 * (manifests/config.yaml) ship, so a pod there starts only once its agent polices it, and
 * a matrix probed right after `pod create` shows policy, not a race with the agent.
 */
export const SANDBOX_POLICY_READY_TIMEOUT_MS = 10_000;

export interface SandboxNode {
  name: string;
  index: number;
  ns: string;
  segment: number;
  address: string;
  stateDir: string;
}

/** The CNI plugin's dataDir on a node (its netconf's, the agent's --cni-data-dir): pod records, ready marks, the policy status. */
export const nodeCniDataDir = (node: Pick<SandboxNode, "stateDir">): string => join(node.stateDir, "ipam");

export function underlayAddress(segment: number, host: number): string {
  return `10.250.${segment}.${host}`;
}

/** The underlay router's MAC on segment `segment` (locally administered, unicast). */
export function underlayBridgeMac(segment: number): string {
  return `02:00:0a:fa:${segment.toString(16).padStart(2, "0")}:01`;
}

export function underlayAddress6(segment: number, host: number): string {
  return `fd00:250:${segment}::${host.toString(16)}`;
}

export function networkConfigFor(backend: SandboxBackend, network = "10.244.0.0/16", ipv6 = false): string {
  const b = backend === "vxlan-direct" ? { Type: "vxlan", DirectRouting: true } : { Type: backend };
  return JSON.stringify({ Network: network, ...(ipv6 ? { EnableIPv6: true, IPv6Network: "fd00:244::/56" } : {}), Backend: b });
}

/**
 * The Node object the sandbox writes for a node, as a kubelet would register it: the
 * hostname and OS labels, the underlay address as InternalIP (what `nodes` peers of
 * ClusterNetworkPolicy match, and how policy knows a pod's own node).
 */
export function sandboxNodeObject(node: SandboxNode, address6?: string): NodeObject {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: node.name, labels: { "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux" } },
    spec: {},
    status: {
      addresses: [{ type: "InternalIP", address: node.address }, ...(address6 ? [{ type: "InternalIP", address: address6 }] : []), { type: "Hostname", address: node.name }],
      conditions: [{ type: "Ready", status: "True" }],
    },
  };
}

/** The state file a sandbox keeps in its state directory, so that later CLI processes can operate on it. */
export const STATE_FILE = "sandbox.json";

const nodeSchema = z.object({ name: z.string(), index: z.number().int(), ns: z.string(), segment: z.number().int(), address: z.string(), stateDir: z.string() });
const stateSchema = z.object({
  version: z.literal(1),
  options: z.object({
    prefix: z.string(),
    stateDir: z.string(),
    nodes: z.number().int(),
    backend: z.enum(SANDBOX_BACKENDS),
    segments: z.union([z.literal(1), z.literal(2)]),
    network: z.string().optional(),
    ipMasq: z.boolean().optional(),
    agentArgs: z.array(z.string()).optional(),
    agentBin: z.string().optional(),
    cniBin: z.string().optional(),
    forwardDrop: z.boolean().optional(),
    ipv6: z.boolean().optional(),
  }),
  etcd: z.object({ endpoint: z.string(), endpoints: z.array(z.string()), pid: z.number().int(), dir: z.string(), tls: z.object({ caFile: z.string(), certFile: z.string(), keyFile: z.string() }) }).optional(),
  nextNodeIndex: z.number().int(),
  nodes: z.array(nodeSchema),
  createdAt: z.string(),
});
export type SandboxState = z.infer<typeof stateSchema>;

/** No sandbox state file where one was expected. */
export class NoSandboxError extends Error {
  constructor(readonly stateDir: string) {
    super(`no sandbox at ${stateDir} (no ${join(stateDir, STATE_FILE)}; start one with: sluicectl sandbox up --nodes 3)`);
  }
}

export class Sandbox {
  readonly underlayNs: string;
  readonly nodes: SandboxNode[] = [];
  etcd: EtcdServer | undefined;
  /** The API server, in Kubernetes mode. */
  kube: SandboxKubeApi | undefined;
  /** The next node gets this index; never reused, so a removed node's name and address stay retired. */
  nextNodeIndex = 1;
  createdAt = new Date().toISOString();
  private readonly agents = new Map<string, ChildProcess>();

  constructor(readonly o: SandboxOptions) {
    this.underlayNs = `${o.prefix}-underlay`;
  }

  get statePath(): string {
    return join(this.o.stateDir, STATE_FILE);
  }

  /** Writes the state file (atomically): options, nodes, etcd. */
  save(): void {
    const e = this.etcd;
    const options: SandboxOptions = { ...this.o };
    delete options.detached; // a loaded sandbox is always detached
    delete options.kubeApi;
    const state: SandboxState = {
      version: 1,
      options,
      ...(e ? { etcd: { endpoint: e.endpoint, endpoints: e.endpoints, pid: e.pid, dir: e.dir, tls: e.tls } } : {}),
      nextNodeIndex: this.nextNodeIndex,
      nodes: this.nodes,
      createdAt: this.createdAt,
    };
    ensurePrivateDir(this.o.stateDir);
    const tmp = `${this.statePath}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(state, null, 2) + "\n");
    renameSync(tmp, this.statePath);
  }

  /**
   * A sandbox another process started, from its state file. Its agents and etcd are
   * detached processes found by pid file; new ones this object starts are detached too.
   */
  static load(stateDir: string): Sandbox {
    const path = join(stateDir, STATE_FILE);
    // The state file names binaries root will run: only from a directory nobody else controls.
    if (!checkPrivateDir(stateDir) || !existsSync(path)) throw new NoSandboxError(stateDir);
    let state: SandboxState;
    try {
      state = stateSchema.parse(JSON.parse(readFileSync(path, "utf8")));
    } catch (err) {
      throw new Error(`${path} is not a sandbox state file (${(err as Error).message.split("\n")[0]}); remove the sandbox with: sluicectl sandbox down --state-dir ${stateDir}`);
    }
    const sb = new Sandbox({ ...state.options, detached: true });
    sb.nodes.push(...state.nodes);
    sb.nextNodeIndex = state.nextNodeIndex;
    sb.createdAt = state.createdAt;
    if (state.etcd) {
      const { pid, dir } = state.etcd;
      sb.etcd = {
        ...state.etcd,
        stop: async () => {
          if (isOurs(pid, dir)) {
            process.kill(pid, "SIGTERM");
            await waitGone(pid, 3000);
          }
        },
      };
    }
    return sb;
  }

  /** The pid of a node's agent when it is running (by pid file, checked against /proc). */
  agentPid(node: SandboxNode): number | undefined {
    const pid = readPid(join(node.stateDir, "agent.pid"));
    return pid && isOurs(pid, this.o.stateDir) ? pid : undefined;
  }

  /** Whether the etcd server recorded in the state is still running. */
  etcdAlive(): boolean {
    return this.etcd !== undefined && isOurs(this.etcd.pid, this.etcd.dir);
  }

  /** Where the Namespace and Pod objects live: etcd, or the API server in Kubernetes mode. */
  get objects(): SandboxObjects {
    return this.kube ? new KubeObjects(this.kube.objects) : new EtcdObjects(this.etcdConnection());
  }

  get netConfPath(): string {
    return join(this.o.stateDir, "net-conf.json");
  }

  /** A node's podCIDR in Kubernetes mode (what kube-controller-manager would assign): the k-th /24 of the network. */
  podCidrOf(index: number): string {
    const net = parseCidr(this.o.network ?? "10.244.0.0/16");
    if (net.family !== 4 || net.prefixLen > 24 || BigInt(index) >= 1n << BigInt(24 - net.prefixLen)) throw new Error(`network ${formatCidr(net)} has no /24 number ${index}`);
    return formatCidr(cidr(4, net.ip + (BigInt(index) << 8n), 24));
  }

  get etcdEndpoint(): string {
    if (!this.etcd) throw new Error("sandbox etcd is not running");
    return this.etcd.endpoint;
  }

  /** How to reach the sandbox's etcd: its endpoint and the client certificate. */
  etcdConnection(): EtcdConnection {
    if (!this.etcd) throw new Error("sandbox etcd is not running");
    return etcdConnection(this.etcd);
  }

  /** A client of the sandbox's etcd (the caller closes it). */
  etcdClient(): Etcd3 {
    return connectEtcd(this.etcdConnection());
  }

  /** --etcd-endpoints and the certificate flags, for sluice-agent and sluicectl. */
  etcdFlags(): string[] {
    if (!this.etcd) throw new Error("sandbox etcd is not running");
    return etcdFlags(this.etcd);
  }

  nodeByName(name: string): SandboxNode {
    const n = this.nodes.find((x) => x.name === name || String(x.index) === name);
    if (!n) throw new Error(`no node ${name} in the sandbox (have ${this.nodes.map((x) => x.name).join(", ")})`);
    return n;
  }

  /** `progress`: one line per step that takes a while (a node started), for a CLI to print as it goes. */
  async up(progress?: (line: string) => void): Promise<void> {
    const o = this.o;
    ensurePrivateDir(o.stateDir);
    await addNetns(this.underlayNs);
    await nsExec(this.underlayNs, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    // No ICMP redirects from the underlay router: external hosts (203.0.113.0/24) share br1
    // with the nodes' 10.250.1.0/24, so a node's packet to one leaves br1 where it came in
    // and Linux would redirect the node to the host itself (shared_media accepts an off-link
    // gateway). The node then reaches it over L2, bypassing the router, and a re-added host
    // (new MAC) is unreachable until the node's stale neighbour entry times out. Both `all`
    // and `default` (bridges created below inherit it): the kernel ORs them.
    for (const scope of ["all", "default"]) await nsExec(this.underlayNs, "sysctl", ["-qw", `net.ipv4.conf.${scope}.send_redirects=0`]);
    for (let s = 1; s <= o.segments; s++) {
      // A fixed MAC: a bridge without one takes its lowest port's, so it would change as
      // external hosts and nodes join or leave, and every node's neighbour entry for its
      // gateway would go stale (seconds of lost packets until it re-resolves).
      await ip("-n", this.underlayNs, "link", "add", `br${s}`, "address", underlayBridgeMac(s), "type", "bridge");
      await ip("-n", this.underlayNs, "addr", "add", `${underlayAddress(s, 1)}/24`, "dev", `br${s}`);
      if (o.ipv6) await ip("-n", this.underlayNs, "addr", "add", `${underlayAddress6(s, 1)}/64`, "dev", `br${s}`, "nodad");
      await ip("-n", this.underlayNs, "link", "set", `br${s}`, "up");
    }
    if (o.ipv6) await nsExec(this.underlayNs, "sysctl", ["-qw", "net.ipv6.conf.all.forwarding=1"]);
    if (o.kubeApi) {
      if (o.ipv6) throw new Error("the sandbox's Kubernetes mode is IPv4 only");
      this.kube = await o.kubeApi(this.underlayNs, underlayAddress(1, 1));
    } else {
      this.etcd = await startEtcd({ dir: join(o.stateDir, "etcd"), detached: o.detached ?? false });
    }
    this.save();
    await this.putNetworkConfig(networkConfigFor(o.backend, o.network, o.ipv6 ?? false));
    for (let i = 1; i <= o.nodes; i++) {
      const n = await this.addNode();
      progress?.(`${n.name} started: ${n.address}, agent pid ${this.agentPid(n) ?? "-"} [${i}/${o.nodes}]`);
    }
  }

  /** etcd: the config key; Kubernetes mode: net-conf.json (read by agents at start, as from a ConfigMap). */
  async putNetworkConfig(json: string): Promise<void> {
    if (this.kube) {
      writeFileSync(this.netConfPath, json);
      return;
    }
    const c = this.etcdClient();
    try {
      await c.put("/coreos.com/network/config").value(json);
    } finally {
      c.close();
    }
  }

  /** Adds a node (namespace, underlay link, agent); segments alternate when there are two. */
  async addNode(): Promise<SandboxNode> {
    const index = Math.max(this.nextNodeIndex, ...this.nodes.map((n) => n.index + 1));
    if (index > 200) throw new Error("the sandbox numbers at most 200 nodes (underlay addresses 10.250.<segment>.11-210)");
    this.nextNodeIndex = index + 1;
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
    // The Node object, as the cluster would have it before the node's agent starts: registered
    // by its kubelet (labels, addresses) and, in Kubernetes mode, given a podCIDR by the
    // controller manager. etcd mode keeps it where `sluicectl apply` would (for `nodes` peers).
    const nodeObject = sandboxNodeObject(node, this.o.ipv6 ? underlayAddress6(segment, 10 + index) : undefined);
    if (this.kube) {
      const podCIDR = this.podCidrOf(index);
      await this.kube.objects.put({ ...nodeObject, spec: { podCIDR, podCIDRs: [podCIDR] } });
    }
    this.nodes.push(node);
    this.save();
    if (!this.kube) await this.withStore((store) => store.applyAll([nodeObject]));
    await this.startAgent(node);
    return node;
  }

  /** The resource store `sluicectl apply` writes through, on the sandbox's etcd. */
  private async withStore<T>(work: (store: EtcdResourceStore) => Promise<T>): Promise<T> {
    const c = this.etcdClient();
    try {
      return await work(new EtcdResourceStore(c));
    } finally {
      c.close();
    }
  }

  agentArgs(node: SandboxNode): string[] {
    const datastore = this.kube ? ["--kube-subnet-mgr", "--kube-api-url", this.kube.url, "--net-config-path", this.netConfPath] : this.etcdFlags();
    return [
      ...datastore,
      "--iface", "eth0",
      "--node-name", node.name,
      "--subnet-file", join(node.stateDir, "subnet.env"),
      // The CNI plugin's dataDir (cni.ts): the pod records and policy-ready marks it shares with the agent.
      "--cni-data-dir", nodeCniDataDir(node),
      "--healthz-ip", "127.0.0.1",
      "--healthz-port", "9099",
      "--iptables-resync", "1",
      "--route-resync", "1",
      "--policy-resync", "1",
      ...(this.o.ipMasq ?? true ? ["--ip-masq"] : []),
      ...(this.o.agentArgs ?? []),
    ];
  }

  /** Starts a node's agent; `extraArgs` come last, so they override the sandbox's own (a restart in another mode). */
  async startAgent(node: SandboxNode, extraArgs: readonly string[] = []): Promise<void> {
    const bin = this.o.agentBin ?? binPath("sluice-agent");
    const logFd = openSync(join(node.stateDir, "agent.log"), "a");
    const argv = [process.execPath, bin, ...this.agentArgs(node), ...extraArgs];
    const child = spawn("ip", ["netns", "exec", node.ns, ...this.withNodeMounts(node, argv)], { stdio: ["ignore", logFd, logFd], detached: this.o.detached ?? false, env: { ...process.env, NODE_NAME: node.name, SLUICE_WIREGUARD_KEY_FILE: join(node.stateDir, "wgkey") } });
    closeSync(logFd);
    if (this.o.detached) child.unref();
    writeFileSync(join(node.stateDir, "agent.pid"), String(child.pid));
    this.agents.set(node.name, child);
  }

  /**
   * wireguard-go keeps its control socket in the one global /run/wireguard/<device>.sock,
   * so each node's agent (and the wireguard-go it starts, which outlives it as a device
   * outlives an agent) sees its own directory there: `ip netns exec` gives the command a
   * mount namespace of its own, where the node's directory is bound over /run/wireguard.
   * Other backends run the agent as it is.
   */
  withNodeMounts(node: SandboxNode, argv: readonly string[]): string[] {
    if (this.o.backend !== "wireguard") return [...argv];
    const dir = nodeWireguardRunDir(node);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    mkdirSync(WIREGUARD_RUN_DIR, { recursive: true, mode: 0o755 });
    return ["sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"', dir, WIREGUARD_RUN_DIR, ...argv];
  }

  /** Stops a node's agent with SIGTERM (graceful: the dataplane stays, wireguard-go's devices too). */
  async stopAgent(node: SandboxNode, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const pid = readPid(join(node.stateDir, "agent.pid"));
    const child = this.agents.get(node.name);
    this.agents.delete(node.name);
    for (const p of await netnsPids(node.ns)) {
      if (isWireguardGo(p)) continue;
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

  /** Removes a node: its agent, its namespace, its underlay link, its Node object. Its lease stays until it expires or is deleted. */
  async removeNode(node: SandboxNode): Promise<void> {
    await this.stopAgent(node, "SIGKILL");
    await killNetnsProcesses(node.ns);
    await delNetns(node.ns);
    if (this.kube) await this.kube.objects.remove({ apiVersion: "v1", kind: "Node", name: node.name });
    else await this.withStore((store) => store.delete({ kind: nodeKind, name: node.name }));
    const i = this.nodes.findIndex((n) => n.name === node.name);
    if (i >= 0) this.nodes.splice(i, 1);
    this.save(); // its directory (agent.log) stays for inspection until the sandbox goes down
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

  /** `progress`: a line as each node's agent turns ready, with a running count. */
  async waitAllReady(timeoutMs = 30_000, progress?: (line: string) => void): Promise<void> {
    let ready = 0;
    await Promise.all(
      this.nodes.map(async (n) => {
        await this.waitReady(n, timeoutMs);
        progress?.(`${n.name} ready [${++ready}/${this.nodes.length}]`);
      }),
    );
  }

  async down(): Promise<void> {
    await teardown(this.o.prefix, this.o.stateDir);
    await this.etcd?.stop();
    await this.kube?.stop();
  }
}

/** Where wireguard-go and `wg` keep control sockets; a sandbox node has its own directory bound there. */
const WIREGUARD_RUN_DIR = "/run/wireguard";
export const nodeWireguardRunDir = (node: Pick<SandboxNode, "stateDir">): string => join(node.stateDir, "wireguard");

function isWireguardGo(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "wireguard-go";
  } catch {
    return false;
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

/**
 * Whether a command-line argument names `dir` or a path inside it (only a path inside it
 * with `insideOnly`): as the whole argument, or embedded (unix://<dir>/etcd.sock,
 * --x=<dir>/f, a JSON argument with "<dir>/s/..."), but only at path-name boundaries, so
 * /tmp/sb does not match /tmp/sb-2/... or /var/tmp/sb/....
 */
export function argMentionsPath(arg: string, dir: string, insideOnly = false): boolean {
  const d = resolve(dir);
  const nameChar = /[A-Za-z0-9._~+-]/;
  for (let i = arg.indexOf(d); i >= 0; i = arg.indexOf(d, i + 1)) {
    const before = i === 0 ? "" : (arg[i - 1] as string);
    const after = arg[i + d.length] ?? "";
    if (!nameChar.test(before) && (insideOnly ? after === "/" : !nameChar.test(after))) return true;
  }
  return false;
}

/** Whether a running process names the state directory on its command line (so it is ours, not a reused pid). */
export function isOurs(pid: number, stateDir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").some((arg) => argMentionsPath(arg, stateDir));
  } catch {
    return false;
  }
}

/**
 * Whether a process still runs. A zombie counts as gone: a detached process's new parent
 * (init, or whatever this host runs as pid 1) may take seconds to reap it.
 */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
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
 * by name, pid file and command line, not by memory.
 */
export async function teardown(prefix: string, stateDir: string): Promise<void> {
  const dir = resolve(stateDir);
  // Refused before anything is killed or removed: a symlink or someone else's directory
  // would make root act on files another user chose.
  checkPrivateDir(dir);
  const namespaces = sandboxNetns(prefix, await listNetns());
  for (const ns of namespaces) await killNetnsProcesses(ns);
  // Processes we started that may not be inside a namespace (etcd). A pid file can be
  // stale (a reboot, pid reuse): only a process whose command line names our state
  // directory is ours to stop.
  if (existsSync(dir)) {
    for (const entry of readdirSync(dir)) {
      const pid = readPid(join(dir, entry, "agent.pid"));
      if (pid && isOurs(pid, dir)) await waitGone(pid, 0);
    }
    const etcdPid = readPid(join(dir, "etcd", "etcd.pid"));
    if (etcdPid && isOurs(etcdPid, dir)) {
      process.kill(etcdPid, "SIGTERM");
      await waitGone(etcdPid, 3000);
    }
  }
  // Anything else still naming a file in the state directory (a pod server whose
  // namespace was deleted by hand, an orphaned agent): ours too.
  for (const pid of processesUsing(dir)) await waitGone(pid, 0);
  for (const ns of namespaces) await delNetns(ns);
  rmSync(dir, { recursive: true, force: true });
}

/** Processes (other than this one and its ancestors) with an argument inside `dir`. */
export function processesUsing(dir: string): number[] {
  const inside = resolve(dir);
  const skip = new Set<number>([process.pid, process.ppid]);
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || skip.has(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").some((a) => argMentionsPath(a, inside, true))) found.push(pid);
    } catch {
      /* gone */
    }
  }
  return found;
}
