/**
 * SubnetManager over the Kubernetes API, flannel's kube subnet manager:
 * - the network config is the net-conf.json file (`--net-config-path`, flannel's keys);
 * - this node's subnets are `spec.podCIDRs` (dual-stack; `spec.podCIDR` for old nodes),
 *   assigned by kube-controller-manager: none assigned is logged clearly (naming the node)
 *   and waited for;
 * - what peers need (backend type, backend data with the VTEP MAC, public addresses) is
 *   published as node annotations `<prefix>/backend-type`, `backend-data`,
 *   `backend-v6-data`, `public-ip`, `public-ipv6` and `kube-subnet-manager: "true"`, the
 *   meaning of flannel's `flannel.alpha.coreos.com/*` keys, patched through nodes/status
 *   (as flannel: its RBAC needs only `nodes/status: patch`) and only when they differ;
 *   `<prefix>/public-ip-overwrite` (and `-ipv6-`) on our node replace the published address;
 * - previousAttrs() reads them back, so a restarted agent keeps its VTEP MAC;
 * - peers are the nodes that carry the annotations and a pod CIDR, from a Node informer;
 * - markReady() sets the node condition NetworkUnavailable=False (reason SluiceIsUp).
 * The API server being unreachable never drops what is known: the peers stay as they were.
 */
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { CoreV1Api, KubeConfig, V1Node } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { ConfigError } from "../config/errors.js";
import { type NetworkConfig, parseNetworkConfig } from "../config/networkConfig.js";
import { type Cidr, type IpAddr, cidrContains, formatCidr, parseCidr, parseIp } from "../model/ip.js";
import type { Lease, LeaseAttrs } from "../model/lease.js";
import { describeKubeError, kubeErrorStatus, loadK8s } from "./kubeClient.js";
import { KubeCollectionWatch, type RawKubeObject } from "./kubeWatch.js";
import { withTimeout } from "./withTimeout.js";
import type { AcquireOptions, SubnetManager } from "./subnetManager.js";

export const DEFAULT_ANNOTATION_PREFIX = "sluice.dev";

/** The annotation keys under a prefix ("sluice.dev" or "sluice.dev/"). */
export function annotationKeys(prefix: string): Record<"subnetKubeManaged" | "backendType" | "backendData" | "backendV6Data" | "publicIP" | "publicIPv6" | "publicIPOverwrite" | "publicIPv6Overwrite", string> {
  const p = prefix.endsWith("/") ? prefix : `${prefix}/`;
  return {
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendType: `${p}backend-type`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    publicIP: `${p}public-ip`,
    publicIPv6: `${p}public-ipv6`,
    publicIPOverwrite: `${p}public-ip-overwrite`,
    publicIPv6Overwrite: `${p}public-ipv6-overwrite`,
  };
}

/** The parts of a Node (typed or raw JSON) this module reads. */
export interface NodeLike {
  metadata?: { name?: string; resourceVersion?: string; annotations?: { [k: string]: string } } | undefined;
  spec?: { podCIDR?: string; podCIDRs?: string[] } | undefined;
}

/** The node's pod CIDRs by family (podCIDRs, else podCIDR); unparsable entries are reported. */
export function podCidrsOf(node: NodeLike): { subnet: Cidr | undefined; subnet6: Cidr | undefined; invalid: string[] } {
  const texts = node.spec?.podCIDRs?.length ? node.spec.podCIDRs : node.spec?.podCIDR ? [node.spec.podCIDR] : [];
  let subnet: Cidr | undefined;
  let subnet6: Cidr | undefined;
  const invalid: string[] = [];
  for (const t of texts) {
    let c: Cidr;
    try {
      c = parseCidr(t);
    } catch {
      invalid.push(t);
      continue;
    }
    if (c.family === 4) subnet ??= c;
    else subnet6 ??= c;
  }
  return { subnet, subnet6, invalid };
}

/** The lease attributes a node's annotations carry, or why they are not usable. */
export function attrsFromAnnotations(node: NodeLike, prefix: string): { attrs: LeaseAttrs } | { reason: string } {
  const k = annotationKeys(prefix);
  const a = node.metadata?.annotations ?? {};
  const type = a[k.backendType];
  if (!type) return { reason: `no ${k.backendType} annotation` };
  const publicIP = a[k.publicIP] ?? "";
  const publicIPv6 = a[k.publicIPv6];
  if (!publicIP && !publicIPv6) return { reason: `neither ${k.publicIP} nor ${k.publicIPv6}` };
  const attrs: LeaseAttrs = { PublicIP: publicIP, BackendType: type };
  if (publicIPv6) attrs.PublicIPv6 = publicIPv6;
  if (node.metadata?.name) attrs.NodeName = node.metadata.name;
  for (const [key, field] of [
    [k.backendData, "BackendData"],
    [k.backendV6Data, "BackendV6Data"],
  ] as const) {
    const text = a[key];
    if (text === undefined) continue;
    try {
      attrs[field] = JSON.parse(text) as unknown;
    } catch {
      return { reason: `${key} is not JSON` };
    }
  }
  return { attrs };
}

/** A peer node's lease: it must carry our annotations (kube-subnet-manager "true") and a pod CIDR. */
export function leaseFromNode(node: NodeLike, prefix: string): { lease: Lease } | { reason: string } {
  const k = annotationKeys(prefix);
  if (node.metadata?.annotations?.[k.subnetKubeManaged] !== "true") return { reason: `no ${k.subnetKubeManaged}: "true" annotation` };
  const { subnet, subnet6, invalid } = podCidrsOf(node);
  if (invalid.length) return { reason: `unparsable pod CIDR ${invalid.join(", ")}` };
  if (!subnet && !subnet6) return { reason: "no pod CIDR" };
  const a = attrsFromAnnotations(node, prefix);
  if ("reason" in a) return a;
  let publicIP: IpAddr | undefined;
  let publicIPv6: IpAddr | undefined;
  try {
    publicIP = a.attrs.PublicIP ? parseIp(a.attrs.PublicIP) : undefined;
    publicIPv6 = a.attrs.PublicIPv6 ? parseIp(a.attrs.PublicIPv6) : undefined;
  } catch {
    return { reason: "unparsable public IP annotation" };
  }
  return { lease: { subnet, subnet6, attrs: a.attrs, publicIP, publicIPv6, leaseId: "0", expiration: undefined, modRevision: node.metadata?.resourceVersion ?? "" } };
}

/** The annotations that publish `attrs` (values as flannel writes them). */
export function annotationsFor(attrs: LeaseAttrs, prefix: string): Record<string, string | null> {
  const k = annotationKeys(prefix);
  return {
    [k.subnetKubeManaged]: "true",
    [k.backendType]: attrs.BackendType,
    [k.backendData]: JSON.stringify(attrs.BackendData ?? null),
    [k.backendV6Data]: attrs.BackendV6Data === undefined ? null : JSON.stringify(attrs.BackendV6Data),
    [k.publicIP]: attrs.PublicIP ? attrs.PublicIP : null,
    [k.publicIPv6]: attrs.PublicIPv6 ? attrs.PublicIPv6 : null,
  };
}

/** No pod CIDR (of a family the network config enables) on our node. */
export class PodCidrNotAssignedError extends Error {
  constructor(
    readonly nodeName: string,
    readonly families: readonly (4 | 6)[],
    assigned: readonly string[],
  ) {
    const what = families.length === 2 ? "no pod CIDR" : `no IPv${families[0]} pod CIDR`;
    super(`node "${nodeName}" has ${what} assigned (spec.podCIDRs: [${assigned.join(", ")}]): run kube-controller-manager with --allocate-node-cidrs=true and --cluster-cidr covering the network config's ${families.map((f) => (f === 4 ? "Network" : "IPv6Network")).join(" and ")}, or set spec.podCIDRs on the node`);
    this.name = "PodCidrNotAssignedError";
  }
}

export interface KubeSubnetManagerOptions {
  /** From kubeConfigFrom(). */
  kc: KubeConfig;
  /** This node (NODE_NAME from the downward API, or --node-name). */
  nodeName: string;
  /** --net-config-path: the net-conf.json file. */
  netConfigPath: string;
  /** --kube-annotation-prefix; default "sluice.dev" ("/" is added). */
  annotationPrefix?: string;
  /** --set-node-network-unavailable: markReady() sets NetworkUnavailable=False. Default true. */
  setNodeNetworkUnavailable?: boolean;
  log: Logger;
  /** acquire() rejects with PodCidrNotAssignedError after waiting this long for a pod CIDR; default: waits forever (logging). */
  podCidrWaitMs?: number;
  /** Retry back-off of reads and patches and of the node watch. Defaults 500 / 10 000 ms. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** One API request slower than this counts as failed. Default 15 000 ms. */
  requestTimeoutMs?: number;
  /** See KubeCollectionWatch. */
  watchTimeoutSeconds?: number;
}

interface PeerEntry {
  lease: Lease;
  signature: string;
}

const signatureOf = (l: Lease): string => JSON.stringify([l.subnet && formatCidr(l.subnet), l.subnet6 && formatCidr(l.subnet6), l.attrs]);

export class KubeSubnetManager extends EventEmitter implements SubnetManager {
  readonly kind = "kubernetes" as const;
  readonly prefix: string;
  private readonly keys: ReturnType<typeof annotationKeys>;
  private network: NetworkConfig | undefined;
  private held: Lease | undefined;
  private nodeGone = false;
  private readonly peerLeases = new Map<string, PeerEntry>();
  /** Why a node is not a peer, as last logged (to log a reason once). */
  private readonly skipped = new Map<string, string>();
  private watch: KubeCollectionWatch | undefined;
  private stopping = false;
  private readonly sleepers = new Set<() => void>();
  private core: CoreV1Api | undefined;

  constructor(private readonly o: KubeSubnetManagerOptions) {
    super();
    this.prefix = o.annotationPrefix ?? DEFAULT_ANNOTATION_PREFIX;
    this.keys = annotationKeys(this.prefix);
  }

  get lease(): Lease | undefined {
    return this.held;
  }

  /** False before acquire() and after our Node object was deleted. */
  get healthy(): boolean {
    return this.held !== undefined && !this.nodeGone;
  }

  /** True while the node watch is connected (false during an API outage). */
  get live(): boolean {
    return this.watch?.live ?? false;
  }

  async networkConfig(): Promise<NetworkConfig> {
    const path = this.o.netConfigPath;
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      throw new ConfigError("--net-config-path", `cannot read ${path}: ${(err as Error).message} (mount the kube-flannel-cfg style ConfigMap's net-conf.json there)`, "sluice-agent");
    }
    const network = parseNetworkConfig(text, path);
    this.o.log.info({ path, ipv4: network.ipv4 && formatCidr(network.ipv4.network), ipv6: network.ipv6 && formatCidr(network.ipv6.network), backend: network.backend.type }, "network config loaded");
    this.network = network;
    return network;
  }

  /** Our node's published annotations (the node is ours by name, so the public addresses are not compared). */
  async previousAttrs(_publicIP?: IpAddr, _publicIPv6?: IpAddr): Promise<LeaseAttrs | undefined> {
    const node = await this.retrying("reading this node", async () => {
      try {
        return await this.readNode();
      } catch (err) {
        if (kubeErrorStatus(err) === 404) return undefined; // acquire() says what is wrong
        throw err;
      }
    });
    if (!node) return undefined;
    const a = attrsFromAnnotations(node, this.prefix);
    return "attrs" in a ? a.attrs : undefined;
  }

  /**
   * Reads our node's pod CIDRs (waiting, with a clear log, until they are assigned) and
   * publishes the attrs as annotations; resolves with the lease.
   */
  async acquire(a: AcquireOptions): Promise<Lease> {
    const network = this.network;
    if (!network) throw new Error("KubeSubnetManager.acquire: call networkConfig() first");
    const started = Date.now();
    const name = this.o.nodeName;
    let delay = this.o.initialBackoffMs ?? 500;
    for (;;) {
      if (this.stopping) throw new Error("subnet manager stopped");
      let waitReason: string;
      try {
        const node = await this.readNode();
        const { subnet, subnet6, invalid } = podCidrsOf(node);
        if (invalid.length) this.o.log.error({ node: name, podCIDRs: invalid }, "ignoring unparsable pod CIDRs of this node");
        const missing = [network.enableIPv4 && !subnet ? 4 : undefined, network.enableIPv6 && !subnet6 ? 6 : undefined].filter((f): f is 4 | 6 => f !== undefined);
        if (missing.length === 0) return await this.take(node, network, a);
        const err = new PodCidrNotAssignedError(name, missing, node.spec?.podCIDRs ?? (node.spec?.podCIDR ? [node.spec.podCIDR] : []));
        if (this.o.podCidrWaitMs !== undefined && Date.now() - started >= this.o.podCidrWaitMs) throw err;
        waitReason = err.message;
      } catch (err) {
        if (err instanceof PodCidrNotAssignedError || this.stopping) throw err;
        waitReason = kubeErrorStatus(err) === 404 ? `node "${name}" does not exist in the API (is NODE_NAME / --node-name this node's name?)` : `cannot read or annotate node "${name}": ${describeKubeError(err)}`;
      }
      this.o.log.error({ node: name, retryInMs: delay }, waitReason);
      await this.sleep(delay);
      delay = Math.min(delay * 2, 30_000);
    }
  }

  private async take(node: V1Node, network: NetworkConfig, a: AcquireOptions): Promise<Lease> {
    const { subnet: s4, subnet6: s6 } = podCidrsOf(node);
    const subnet = network.enableIPv4 ? s4 : undefined;
    const subnet6 = network.enableIPv6 ? s6 : undefined;
    for (const [c, pool] of [
      [subnet, network.ipv4],
      [subnet6, network.ipv6],
    ] as const) {
      if (c && pool && !cidrContains(pool.network, c)) this.o.log.warn({ node: this.o.nodeName, podCIDR: formatCidr(c), network: formatCidr(pool.network) }, "this node's pod CIDR is outside the network config's network (check --cluster-cidr)");
    }
    const attrs = this.withOverwrites(a.attrs(), node);
    const published = await this.publish(node, attrs);
    const lease: Lease = {
      subnet,
      subnet6,
      attrs,
      publicIP: attrs.PublicIP ? parseIp(attrs.PublicIP) : undefined,
      publicIPv6: attrs.PublicIPv6 ? parseIp(attrs.PublicIPv6) : undefined,
      leaseId: "0",
      expiration: undefined,
      modRevision: published.metadata?.resourceVersion ?? "",
    };
    this.held = lease;
    this.nodeGone = false;
    this.o.log.info({ node: this.o.nodeName, subnet: subnet && formatCidr(subnet), subnet6: subnet6 && formatCidr(subnet6) }, "subnet taken from the node's pod CIDRs");
    return lease;
  }

  /** `<prefix>/public-ip-overwrite` on our node replaces the published public address (flannel's NAT escape hatch). */
  private withOverwrites(attrs: LeaseAttrs, node: NodeLike): LeaseAttrs {
    const out = { ...attrs };
    const ann = node.metadata?.annotations ?? {};
    for (const [key, field, family] of [
      [this.keys.publicIPOverwrite, "PublicIP", 4],
      [this.keys.publicIPv6Overwrite, "PublicIPv6", 6],
    ] as const) {
      const v = ann[key];
      if (!v) continue;
      try {
        if (parseIp(v).family !== family) throw new Error("wrong family");
        out[field] = v;
        this.o.log.info({ annotation: key, value: v }, "publishing the overwritten public address");
      } catch {
        this.o.log.warn({ annotation: key, value: v }, `ignoring an annotation that is not an IPv${family} address`);
      }
    }
    return out;
  }

  /** Patches the annotations that differ (through nodes/status, as flannel); returns the node as it now is. */
  private async publish(node: V1Node, attrs: LeaseAttrs): Promise<V1Node> {
    const current = node.metadata?.annotations ?? {};
    const diff: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(annotationsFor(attrs, this.prefix))) {
      if (v === null ? k in current : current[k] !== v) diff[k] = v;
    }
    if (Object.keys(diff).length === 0) {
      this.o.log.debug({ node: this.o.nodeName }, "node annotations already up to date");
      return node;
    }
    const patched = await this.patchStatus({ metadata: { annotations: diff } });
    this.o.log.info({ node: this.o.nodeName, annotations: Object.keys(diff) }, "node annotations published");
    return patched;
  }

  async startPeerWatch(): Promise<void> {
    if (this.watch) return this.watch.start();
    const w = new KubeCollectionWatch({
      kc: this.o.kc,
      log: this.o.log,
      resource: { group: "", version: "v1", plural: "nodes", kind: "Node" },
      handlers: {
        list: (items) => this.onNodeList(items),
        upsert: (o) => {
          if (this.setPeer(o)) this.emit("peers");
        },
        remove: (o) => this.onNodeRemoved(o),
      },
      ...(this.o.initialBackoffMs !== undefined ? { initialBackoffMs: this.o.initialBackoffMs } : {}),
      ...(this.o.maxBackoffMs !== undefined ? { maxBackoffMs: this.o.maxBackoffMs } : {}),
      ...(this.o.requestTimeoutMs !== undefined ? { requestTimeoutMs: this.o.requestTimeoutMs } : {}),
      ...(this.o.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: this.o.watchTimeoutSeconds } : {}),
    });
    this.watch = w;
    await w.start();
  }

  peers(): Lease[] {
    return [...this.peerLeases.keys()].sort().map((k) => (this.peerLeases.get(k) as PeerEntry).lease);
  }

  private onNodeList(items: RawKubeObject[]): void {
    let changed = false;
    const names = new Set(items.map((i) => i.metadata?.name ?? ""));
    for (const name of [...this.peerLeases.keys()]) {
      if (!names.has(name)) changed = this.dropPeer(name) || changed;
    }
    for (const i of items) changed = this.setPeer(i) || changed;
    if (!names.has(this.o.nodeName)) this.ownNodeGone();
    if (changed) this.emit("peers");
  }

  private onNodeRemoved(o: RawKubeObject): void {
    const name = o.metadata?.name ?? "";
    if (name === this.o.nodeName) this.ownNodeGone();
    if (this.dropPeer(name)) this.emit("peers");
  }

  /** Updates one node's peer entry; true when the peer set changed. */
  private setPeer(o: RawKubeObject): boolean {
    const node = o as NodeLike;
    const name = node.metadata?.name ?? "";
    if (name === this.o.nodeName) this.checkOwnNode(node);
    const r = leaseFromNode(node, this.prefix);
    if ("reason" in r) {
      if (this.skipped.get(name) !== r.reason) {
        this.skipped.set(name, r.reason);
        this.o.log.debug({ node: name, reason: r.reason }, "node is not a peer (yet)");
      }
      return this.dropPeer(name);
    }
    this.skipped.delete(name);
    const signature = signatureOf(r.lease);
    const before = this.peerLeases.get(name);
    this.peerLeases.set(name, { lease: r.lease, signature });
    if (before?.signature === signature) return false;
    this.o.log.info({ node: name, subnet: r.lease.subnet && formatCidr(r.lease.subnet), subnet6: r.lease.subnet6 && formatCidr(r.lease.subnet6), publicIP: r.lease.attrs.PublicIP }, before ? "peer changed" : "peer added");
    return true;
  }

  private dropPeer(name: string): boolean {
    if (!this.peerLeases.delete(name)) return false;
    this.o.log.info({ node: name }, "peer removed");
    return true;
  }

  /** Our node's pod CIDRs changed under us (they should not): say so with the new lease. */
  private checkOwnNode(node: NodeLike): void {
    this.nodeGone = false;
    const held = this.held;
    if (!held || !this.network) return;
    const { subnet: s4, subnet6: s6 } = podCidrsOf(node);
    const subnet = this.network.enableIPv4 ? s4 : undefined;
    const subnet6 = this.network.enableIPv6 ? s6 : undefined;
    const same = (a: Cidr | undefined, b: Cidr | undefined): boolean => (a && formatCidr(a)) === (b && formatCidr(b));
    if (same(subnet, held.subnet) && same(subnet6, held.subnet6)) return;
    if ((this.network.enableIPv4 && !subnet) || (this.network.enableIPv6 && !subnet6)) {
      this.o.log.error({ node: this.o.nodeName }, "this node's pod CIDR was removed; keeping the current subnet");
      return;
    }
    const next: Lease = { ...held, subnet, subnet6, modRevision: node.metadata?.resourceVersion ?? held.modRevision };
    this.held = next;
    this.o.log.warn({ node: this.o.nodeName, subnet: subnet && formatCidr(subnet), subnet6: subnet6 && formatCidr(subnet6) }, "this node's pod CIDR changed");
    this.emit("changed", next, held);
  }

  private ownNodeGone(): void {
    if (!this.held || this.nodeGone) return;
    this.nodeGone = true;
    this.o.log.error({ node: this.o.nodeName }, "this node's Node object is gone from the API; keeping the dataplane as it is");
  }

  /**
   * Sets NetworkUnavailable=False on our node (unless --set-node-network-unavailable=false
   * or it already is), retrying with back-off until it is done or stop() is called.
   */
  async markReady(): Promise<void> {
    if (this.o.setNodeNetworkUnavailable === false) return;
    await this.retrying("setting NetworkUnavailable=False", async () => {
      const node = await this.readNode();
      const cond = node.status?.conditions?.find((c) => c.type === "NetworkUnavailable");
      if (cond?.status === "False") {
        this.o.log.debug({ node: this.o.nodeName }, "NetworkUnavailable is already False");
        return;
      }
      const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      await this.patchStatus({ status: { conditions: [{ type: "NetworkUnavailable", status: "False", reason: "SluiceIsUp", message: "Sluice is running on this node", lastTransitionTime: now, lastHeartbeatTime: now }] } });
      this.o.log.info({ node: this.o.nodeName }, "node condition NetworkUnavailable set to False");
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const wake of [...this.sleepers]) wake();
    await this.watch?.stop();
  }

  // ------------------------------------------------------------------ API calls

  private async api(): Promise<CoreV1Api> {
    if (!this.core) {
      const k8s = await loadK8s();
      this.core = this.o.kc.makeApiClient(k8s.CoreV1Api);
    }
    return this.core;
  }

  private async readNode(): Promise<V1Node> {
    const core = await this.api();
    return await withTimeout(core.readNode({ name: this.o.nodeName }), this.o.requestTimeoutMs ?? 15_000, `reading node ${this.o.nodeName}`);
  }

  /** A strategic merge patch on nodes/status (flannel's kind of patch, and what its RBAC allows). */
  private async patchStatus(body: object): Promise<V1Node> {
    const k8s = await loadK8s();
    const core = await this.api();
    const opts = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.StrategicMergePatch);
    return await withTimeout(core.patchNodeStatus({ name: this.o.nodeName, body }, opts), this.o.requestTimeoutMs ?? 15_000, `patching node ${this.o.nodeName}`);
  }

  /** Runs `fn` until it succeeds, with back-off; rejects only when stopped. */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let delay = this.o.initialBackoffMs ?? 500;
    for (;;) {
      if (this.stopping) throw new Error(`subnet manager stopped while ${what}`);
      try {
        return await fn();
      } catch (err) {
        if (this.stopping) throw err;
        this.o.log.warn({ node: this.o.nodeName, err: describeKubeError(err), retryInMs: delay }, `${what} failed; retrying`);
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.o.maxBackoffMs ?? 10_000);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        this.sleepers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }
}
