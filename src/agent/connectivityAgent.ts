/**
 * The agent: connectivity (flanneld's job) and policy (Felix's), wired the one-way DESIGN
 * way: subnet manager (lease, peers) and policy feed -> (debounced) pure route/rule
 * computation -> dataplane reconcilers. Start-up, every change and the periodic resync all
 * take the same path, and shutdown leaves the dataplane in place so that a restart loses
 * no traffic. It knows only a SubnetManager and a PolicyFeed (datastores.ts picks etcd or
 * Kubernetes), plus the files it shares with sluice-cni on the node (localEndpoints.ts).
 */
import type { Server } from "node:http";
import type { Logger } from "pino";
import type { AgentConfig } from "../config/agentConfig.js";
import { type NetworkConfig, vxlanPort } from "../config/networkConfig.js";
import type { SubnetManager } from "../datastore/subnetManager.js";
import { Netlink } from "../dataplane/netlink.js";
import { reconcileRouting } from "../dataplane/routeReconciler.js";
import { ensureSysctl } from "../dataplane/sysctl.js";
import { type Underlay, chooseUnderlay } from "../dataplane/underlay.js";
import { ensureVxlanDevice, randomVtepMac } from "../dataplane/vxlanDevice.js";
import { type Family, type IpAddr, formatCidr, formatIp, parseIp } from "../model/ip.js";
import type { Lease, LeaseAttrs } from "../model/lease.js";
import { computeRouting, podMtu, vxlanDeviceName } from "../routing/backends.js";
import { type AgentDatastore, type EndpointPublisher, type StartablePolicyFeed, openDatastore } from "./datastores.js";
import { startHealthServer } from "./health.js";
import { LocalEndpointWatcher, PolicyReadyMarks } from "./localEndpoints.js";
import { leaseToPeer, vtepMacOf } from "./peers.js";
import { HostRules, type PolicyInput } from "./hostRules.js";
import { forgetConntrackOf } from "../dataplane/conntrack.js";
import { PolicyEngine } from "./policyEngine.js";
import type { TableChoice, UnderlayTrust } from "../render/hostRules.js";
import { KUBE_IPVS_DEVICE } from "../render/kubeIpvs.js";
import type { TrustedPeer } from "../routing/desired.js";
import { readSubnetEnv, renderDockerOpts, renderSubnetEnv, writeFileAtomic, type SubnetEnv } from "./subnetEnv.js";

export class ConnectivityAgent {
  private datastore: AgentDatastore | undefined;
  private subnets: SubnetManager | undefined;
  private nl: Netlink | undefined;
  private health: Server | undefined;
  private network: NetworkConfig | undefined;
  private underlay: Underlay | undefined;
  private publicIP: IpAddr | undefined;
  private publicIPv6: IpAddr | undefined;
  private vtepMac: string | undefined;
  private vtepMac6: string | undefined;
  private hostRules: HostRules | undefined;
  private localEndpoints: LocalEndpointWatcher | undefined;
  private readyMarks: PolicyReadyMarks | undefined;
  private publisher: EndpointPublisher | undefined;
  private policyFeed: StartablePolicyFeed | undefined;
  private policy: PolicyEngine | undefined;
  private policyPending: NodeJS.Timeout | undefined;
  private timers: NodeJS.Timeout[] = [];
  private pending: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private subnetEnvWritten = false;
  private rulesInPlace = false;
  private markedReady = false;
  private lastLoop = Date.now();
  private stopping = false;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
  ) {}

  /** Why the node is not ready yet; empty once the first full sync is done. */
  private notReadyReasons(): string[] {
    const reasons: string[] = [];
    if (!this.subnets?.healthy) reasons.push("no live subnet lease");
    if (!this.rulesInPlace) reasons.push("iptables rules not yet in place");
    if (this.policy && !this.policy.synced) reasons.push("policy data not yet listed from the datastore");
    if (!this.subnetEnvWritten) reasons.push("subnet.env not yet written");
    return reasons;
  }

  async start(): Promise<void> {
    const { cfg, log } = this;
    if (cfg["healthz-port"] > 0) {
      this.health = await startHealthServer(cfg["healthz-ip"], cfg["healthz-port"], {
        live: () => Date.now() - this.lastLoop < Math.max(60_000, 3 * cfg["route-resync"]),
        ready: () => {
          const reasons = this.notReadyReasons();
          return { ready: reasons.length === 0, reasons };
        },
      });
      log.info({ address: `${cfg["healthz-ip"]}:${cfg["healthz-port"]}` }, "health server listening");
    }

    if (await ensureSysctl("net/ipv4/ip_forward", "1")) log.info("IPv4 forwarding was off; turned it on (net.ipv4.ip_forward=1)");
    else log.info("IPv4 forwarding is on");

    this.datastore = await openDatastore(cfg, log);
    const subnets = this.datastore.subnets;
    this.subnets = subnets;
    log.info({ datastore: this.datastore.kind, node: cfg.nodeName }, "datastore chosen");
    this.network = await subnets.networkConfig();
    const network = this.network;
    if (network.enableIPv6 && (await ensureSysctl("net/ipv6/conf/all/forwarding", "1"))) log.info("IPv6 forwarding was off; turned it on");

    this.nl = new Netlink();
    this.underlay = await chooseUnderlay(this.nl, { iface: cfg.iface, ifaceRegex: cfg["iface-regex"], ifaceCanReach: cfg["iface-can-reach"] });
    this.publicIP = cfg["public-ip"] ? parseIp(cfg["public-ip"]) : this.underlay.ipv4;
    this.publicIPv6 = cfg["public-ipv6"] ? parseIp(cfg["public-ipv6"]) : this.underlay.ipv6;
    if (network.enableIPv4 && !this.publicIP) throw new Error(`interface ${this.underlay.name} has no IPv4 address; set --public-ip or --iface`);
    if (network.enableIPv6 && !this.publicIPv6) throw new Error(`interface ${this.underlay.name} has no IPv6 address; set --public-ipv6 or --iface`);
    log.info({ iface: this.underlay.name, publicIP: this.publicIP && formatIp(this.publicIP), publicIPv6: this.publicIPv6 && formatIp(this.publicIPv6), mtu: this.underlay.mtu, backend: network.backend.type }, "using inter-node interface");

    [this.vtepMac, this.vtepMac6] = await this.chooseVtepMacs();
    const previous = await readSubnetEnv(cfg["subnet-file"]);
    subnets.on("changed", (lease: Lease, old: Lease | undefined) => {
      log.warn({ from: old?.subnet && formatCidr(old.subnet), to: lease.subnet && formatCidr(lease.subnet) }, "subnet lease changed; reprogramming");
      this.schedule(0);
    });
    await subnets.acquire({ publicIP: this.publicIP, publicIPv6: this.publicIPv6, attrs: () => this.leaseAttrs(), previous: previous ? { subnet: previous.subnet, subnet6: previous.ipv6Subnet } : undefined });

    this.hostRules = await HostRules.create(cfg, log);
    this.localEndpoints = new LocalEndpointWatcher({ dataDir: cfg["cni-data-dir"], nodeName: cfg.nodeName, log });
    this.readyMarks = new PolicyReadyMarks(cfg["cni-data-dir"], log);
    await this.localEndpoints.start();
    // etcd mode: the node's pods reach etcd (and so every node's policy, this one's too) through the agent.
    this.publisher = this.datastore.endpointPublisher(this.localEndpoints);
    this.publisher?.start();
    if (cfg["enable-policy"]) this.startPolicy(this.hostRules, this.localEndpoints);
    // Without policy, a pod is "policy ready" once it is wired: the marks follow the records.
    else this.localEndpoints.on("changed", () => this.schedulePolicy());
    subnets.on("peers", () => this.schedule(50));
    await subnets.startPeerWatch();
    // The first reconcile goes through the same queue as every later one, so they never overlap.
    await this.enqueue(() => this.reconcile(), true);
    this.timers.push(setInterval(() => this.schedule(0), cfg["route-resync"]));
    // flannel's short resync keeps the nat rules (and, without policy, the forward rules)
    // true; the policy tables are larger, so their full check runs on its own period.
    // Every change applies at once, whatever the periods.
    this.timers.push(setInterval(() => void this.enqueue(() => this.resyncRules(this.policy ? ["nat"] : ["nat", "filter"])), cfg["iptables-resync"]));
    if (this.policy) this.timers.push(setInterval(() => void this.enqueue(() => this.resyncRules(["filter"])), cfg["policy-resync"]));
  }

  /** Lists and watches the policy data; until the first list the filter table is left as it is. */
  private startPolicy(hostRules: HostRules, local: LocalEndpointWatcher): void {
    const feed = (this.datastore as AgentDatastore).policyFeed(local);
    this.policyFeed = feed;
    this.policy = new PolicyEngine(feed, this.cfg.nodeName, hostRules.capabilities.sctpMatch, this.log);
    this.policy.on("changed", () => this.schedulePolicy());
    feed.start().catch((err: Error) => {
      if (!this.stopping) this.log.error({ err: err.message }, "policy source stopped");
    });
  }

  /** Coalesces a burst of policy events (a kubectl apply of many objects) into one apply. */
  private schedulePolicy(): void {
    if (this.stopping || this.policyPending) return;
    this.policyPending = setTimeout(() => {
      this.policyPending = undefined;
      void this.enqueue(() => this.resyncRules(["filter"]));
    }, 15);
  }

  /**
   * The VTEP MACs (IPv4, IPv6) must survive restarts: each is the existing device's,
   * else the one in our old lease, else a new one.
   */
  private async chooseVtepMacs(): Promise<[string | undefined, string | undefined]> {
    const network = this.network as NetworkConfig;
    const backend = network.backend;
    if (backend.type !== "vxlan") return [undefined, undefined];
    const links = await (this.nl as Netlink).links();
    const own = await (this.subnets as SubnetManager).previousAttrs(this.publicIP, this.publicIPv6);
    const pick = (family: 4 | 6, enabled: boolean, stored: unknown): string | undefined => {
      if (!enabled) return undefined;
      const dev = links.find((l) => l.name === vxlanDeviceName(backend.vni, family) && l.kind === "vxlan");
      return dev?.mac ?? vtepMacOf(stored) ?? randomVtepMac(backend.macPrefix);
    };
    return [pick(4, network.enableIPv4, own?.BackendData), pick(6, network.enableIPv6, own?.BackendV6Data)];
  }

  private leaseAttrs(): LeaseAttrs {
    const network = this.network as NetworkConfig;
    const attrs: LeaseAttrs = { PublicIP: this.publicIP ? formatIp(this.publicIP) : "", BackendType: network.backend.type, NodeName: this.cfg.nodeName };
    if (this.publicIPv6) attrs.PublicIPv6 = formatIp(this.publicIPv6);
    if (network.backend.type === "vxlan") {
      if (this.vtepMac && network.enableIPv4) attrs.BackendData = { VNI: network.backend.vni, VtepMAC: this.vtepMac };
      if (this.vtepMac6 && network.enableIPv6) attrs.BackendV6Data = { VNI: network.backend.vni, VtepMAC: this.vtepMac6 };
    }
    return attrs;
  }

  /** Coalesces bursts of events into one reconcile. */
  private schedule(delayMs: number): void {
    if (this.stopping || this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      void this.enqueue(() => this.reconcile());
    }, delayMs);
  }

  /**
   * Everything that writes the dataplane runs through this one queue, so route and rule
   * updates never overlap. Errors are logged (the next resync retries) unless `rethrow`.
   */
  private enqueue(work: () => Promise<void>, rethrow = false): Promise<void> {
    const next = this.running.then(work);
    this.running = next.catch((err: Error) => {
      if (!rethrow) this.log.error({ err: err.message }, "dataplane update failed; will retry");
    });
    return rethrow ? next : this.running;
  }

  private async reconcile(): Promise<void> {
    this.lastLoop = Date.now();
    const lease = this.subnets?.lease;
    const network = this.network as NetworkConfig;
    const underlay = this.underlay as Underlay;
    const nl = this.nl as Netlink;
    if (!lease) return;
    const backend = network.backend;
    const vni = backend.type === "vxlan" ? backend.vni : 0;
    const dev4 = vxlanDeviceName(vni, 4);
    const dev6 = vxlanDeviceName(vni, 6);
    // One MTU for both families: the tighter one when an IPv6 tunnel is in use.
    const mtu = podMtu(backend, underlay.mtu, lease.subnet6 !== undefined);
    const vxlanDevices: string[] = [];
    if (backend.type === "vxlan") {
      const families = [
        { name: dev4, subnet: lease.subnet, local: this.publicIP, pool: network.ipv4, mac: this.vtepMac },
        { name: dev6, subnet: lease.subnet6, local: this.publicIPv6, pool: network.ipv6, mac: this.vtepMac6 },
      ];
      for (const f of families) {
        if (!f.subnet || !f.local || !f.pool) continue;
        await ensureVxlanDevice(nl, { name: f.name, vni, port: vxlanPort(backend), local: f.local, underlayIndex: underlay.index, mtu, learning: backend.learning, gbp: backend.gbp, preferredMac: f.mac, macPrefix: backend.macPrefix, address: { family: f.subnet.family, value: f.subnet.ip }, clusterNetwork: f.pool.network }, this.log);
        vxlanDevices.push(f.name);
      }
    }
    if (this.policy) await this.detectKubeIpvs(nl);
    const peers = (this.subnets as SubnetManager).peers().map(leaseToPeer);
    const desired = computeRouting(
      { backend, subnet: lease.subnet, subnet6: lease.subnet6, publicIP: this.publicIP, publicIPv6: this.publicIPv6, onLinkNetworks: underlay.onLinkNetworks, vxlanDevice: dev4, vxlanDevice6: dev6, blackholeRoute: this.cfg["ip-blackhole-route"], network: network.ipv4?.network, network6: network.ipv6?.network },
      peers,
    );
    for (const p of desired.problems) this.log.error({ problem: p }, "peer not programmed");
    const refused = desired.refused.join("\n");
    if (refused !== this.lastRefused) for (const r of desired.refused) this.log.warn({ refused: r }, "peer refused");
    this.lastRefused = refused;
    this.underlayTrust = underlayTrustOf(desired.trusted, underlay.name, backend.type === "vxlan" ? vxlanPort(backend) : undefined, { 4: vxlanDevices.includes(dev4) ? dev4 : undefined, 6: vxlanDevices.includes(dev6) ? dev6 : undefined });
    const counts = await reconcileRouting(nl, desired, vxlanDevices, this.log);
    const changed = Object.values(counts).some((n) => n > 0);
    if (changed) this.log.info({ ...counts, peers: desired.decisions }, "routing reconciled");
    // With policy on, the filter table follows policy events and its own (longer) resync;
    // checking it on every route resync would cost a full iptables-save + ipset list. The
    // peers' trust and the IPVS path live there too: a change of either applies it at once.
    const filterChanged = trustKey(this.underlayTrust) !== this.appliedTrust || this.kubeIpvsKey !== this.appliedKubeIpvs;
    await this.resyncRules(this.policy && !filterChanged ? ["nat"] : ["nat", "filter"]);
    // With policy on, subnet.env (which the CNI plugin needs to wire a pod) appears only
    // once the policy chains are in place: on a fresh node no pod can start unpoliced.
    if (this.policy && !this.rulesInPlace) return;
    const env: SubnetEnv = { network: network.ipv4?.network, subnet: lease.subnet, ipv6Network: network.ipv6?.network, ipv6Subnet: lease.subnet6, mtu, ipMasq: this.cfg["ip-masq"] };
    await this.writeSubnetEnv(env);
    await this.markReadyOnce();
  }

  /**
   * kube-proxy in IPVS mode puts Service addresses on kube-ipvs0; while that device exists,
   * Service traffic's INPUT -> OUTPUT path is policed (src/render/kubeIpvs.ts). Looked for
   * at start and on every route resync (no link watch: a change shows within one period,
   * and a failed look keeps the last answer). A change applies the filter table at once.
   */
  private async detectKubeIpvs(nl: Netlink): Promise<void> {
    const link = await nl.linkByName(KUBE_IPVS_DEVICE);
    // Its addresses are the Service addresses: a pod's packet to one is judged in OUTPUT, not as traffic to this host.
    const found = link === undefined ? undefined : (await nl.addresses()).filter((a) => a.index === link.index).map((a) => formatIp(a.address)).sort();
    const key = found === undefined ? "" : `on|${found.join(",")}`;
    if (key === this.kubeIpvsKey) return;
    const was = this.kubeIpvs !== undefined;
    this.kubeIpvs = found;
    this.kubeIpvsKey = key;
    if (found && !was) this.log.info({ device: KUBE_IPVS_DEVICE, services: found.length }, "kube-proxy runs in IPVS mode: Service traffic through INPUT and OUTPUT gets the endpoint chains");
    else if (found) this.log.debug({ device: KUBE_IPVS_DEVICE, services: found.length }, "kube-ipvs0 addresses changed");
    else this.log.info({ device: KUBE_IPVS_DEVICE }, "kube-proxy IPVS device gone: its INPUT/OUTPUT path rules are removed");
  }

  private async policyInput(network: NetworkConfig, tables: readonly TableChoice[], kubeIpvs: readonly string[] | undefined): Promise<PolicyInput> {
    if (!this.policy) return { enabled: false };
    // A nat-only resync needs no render (and must not be held up by a failing one).
    if (!tables.includes("filter")) return { enabled: true, renders: undefined };
    const families = [...(network.ipv4 ? [4 as const] : []), ...(network.ipv6 ? [6 as const] : [])];
    return { enabled: true, renders: await this.policy.renders(families), kubeIpvs: kubeIpvs && { services: kubeIpvs } };
  }

  private async resyncRules(tables: readonly TableChoice[]): Promise<void> {
    const lease = this.subnets?.lease;
    const network = this.network as NetworkConfig;
    if (!lease || !this.hostRules || this.stopping) return;
    try {
      const trust = this.underlayTrust;
      const kubeIpvs = this.kubeIpvs;
      const kubeIpvsKey = this.kubeIpvsKey;
      const { filterApplied } = await this.hostRules.apply(network, lease, await this.policyInput(network, tables, kubeIpvs), tables, trust);
      if (filterApplied) {
        this.appliedTrust = trustKey(trust);
        this.appliedKubeIpvs = kubeIpvsKey;
      }
      if (filterApplied && this.policy) await forgetConntrackOf(this.policy.takeRemovedAddresses(), this.log);
      if (filterApplied) await this.readyMarks?.sync(this.policy ? this.policy.renderedLocalEndpoints() : (this.localEndpoints?.records() ?? []));
      if (filterApplied && !this.rulesInPlace) {
        this.log.info(this.policy ? "host rules and policy in place" : "host iptables rules in place");
        this.rulesInPlace = true;
        // subnet.env waits for the policy (see reconcile); write it now rather than at the next resync.
        if (this.policy && !this.subnetEnvWritten) this.schedule(0);
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "cannot apply iptables rules; will retry");
    }
  }

  /** The peers the underlay rules trust, per family (undefined until the first reconcile knows the peers). */
  private underlayTrust: ReadonlyMap<Family, UnderlayTrust> | undefined;
  /** trustKey of the trust in the last applied filter table. */
  private appliedTrust = "";
  /** kube-ipvs0 exists (detectKubeIpvs), and whether the last applied filter table had the IPVS path. */
  private kubeIpvs: string[] | undefined;
  private kubeIpvsKey = "";
  private appliedKubeIpvs = "";
  private lastRefused = "";

  private lastSubnetEnv = "";
  private async writeSubnetEnv(env: SubnetEnv): Promise<void> {
    const text = renderSubnetEnv(env);
    if (text === this.lastSubnetEnv && this.subnetEnvWritten) return;
    await writeFileAtomic(this.cfg["subnet-file"], text);
    if (this.cfg["docker-opts-file"]) await writeFileAtomic(this.cfg["docker-opts-file"], renderDockerOpts(env));
    this.lastSubnetEnv = text;
    this.subnetEnvWritten = true;
    this.log.info({ path: this.cfg["subnet-file"], subnet: env.subnet && formatCidr(env.subnet), mtu: env.mtu }, "wrote subnet.env");
  }

  /** Tells the datastore once the first full sync is done (Kubernetes: NetworkUnavailable=False); retried on every pass until it succeeds. */
  private async markReadyOnce(): Promise<void> {
    if (this.markedReady || this.stopping || this.notReadyReasons().length > 0) return;
    try {
      await (this.subnets as SubnetManager).markReady();
      this.markedReady = true;
      this.log.info("node ready: lease held, rules and policy in place, subnet.env written");
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "cannot mark the node ready; will retry");
    }
  }

  /** Stops the loops; leaves routes, rules and the lease in place so a restart loses nothing. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    if (this.pending) clearTimeout(this.pending);
    if (this.policyPending) clearTimeout(this.policyPending);
    this.localEndpoints?.stop();
    await this.publisher?.stop();
    await this.policyFeed?.stop();
    await this.running.catch(() => undefined);
    await this.policy?.close();
    await this.subnets?.stop();
    await this.datastore?.close();
    this.nl?.close();
    await new Promise<void>((r) => (this.health ? this.health.close(() => r()) : r()));
    this.log.info("stopped; dataplane left in place");
  }
}

/** Per family: where peers' traffic arrives (underlay interface, the family's VXLAN device if any) and which peers are known. */
function underlayTrustOf(trusted: readonly TrustedPeer[], iface: string, port: number | undefined, devices: Record<Family, string | undefined>): ReadonlyMap<Family, UnderlayTrust> {
  const out = new Map<Family, UnderlayTrust>();
  for (const family of [4, 6] as const) {
    const device = devices[family];
    out.set(family, { iface, vxlan: device !== undefined && port !== undefined ? { device, port } : undefined, peers: trusted.filter((p) => p.family === family) });
  }
  return out;
}

function trustKey(t: ReadonlyMap<Family, UnderlayTrust> | undefined): string {
  if (!t) return "";
  return JSON.stringify([...t].map(([f, u]) => [f, u.iface, u.vxlan ?? null, u.peers.map((p) => `${formatIp(p.publicIP)} ${formatCidr(p.subnet)}`).sort()]));
}
