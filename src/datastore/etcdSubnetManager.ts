/**
 * SubnetManager over etcd, flannel's layout: the network config at `<prefix>/config`,
 * one lease per node under `<prefix>/subnets` (EtcdSubnetRegistry), held and renewed by a
 * LeaseKeeper, and the peers from an EtcdListWatch that relists on its own after a failed
 * watch (keeping the last known peers, so the dataplane stays as it is meanwhile).
 */
import { describeBackend } from "../backends/specs.js";
import { EventEmitter } from "node:events";
import type { Etcd3, IKeyValue } from "etcd3";
import type { Logger } from "pino";
import type { NetworkConfig } from "../config/networkConfig.js";
import { LeaseKeeper } from "../ipam/leaseKeeper.js";
import { type IpAddr, formatCidr, ipEquals } from "../model/ip.js";
import type { Lease, LeaseAttrs } from "../model/lease.js";
import { EtcdListWatch } from "./etcdListWatch.js";
import { EtcdSubnetRegistry, type LeaseEvent } from "./etcdSubnetRegistry.js";
import type { AcquireOptions, SubnetManager } from "./subnetManager.js";

export interface EtcdSubnetManagerOptions {
  /** The caller's client: it closes it after stop(). */
  client: Etcd3;
  /** flannel's prefix (--etcd-prefix), e.g. /coreos.com/network. */
  prefix: string;
  /** TTL of the subnet lease and how long before expiry it is renewed. */
  ttlMs: number;
  renewMarginMs: number;
  log: Logger;
}

export class EtcdSubnetManager extends EventEmitter implements SubnetManager {
  readonly kind = "etcd" as const;
  readonly registry: EtcdSubnetRegistry;
  private network: NetworkConfig | undefined;
  private keeper: LeaseKeeper | undefined;
  private readonly peerWatch: EtcdListWatch;
  private readonly leases = new Map<string, Lease>();
  private stopping = false;

  constructor(private readonly o: EtcdSubnetManagerOptions) {
    super();
    this.registry = new EtcdSubnetRegistry(o.client, o.prefix, o.log);
    this.peerWatch = new EtcdListWatch({
      client: o.client,
      prefix: this.registry.subnetsPrefix,
      log: o.log,
      name: "lease",
      what: "subnet leases",
      // A delete's previous value names the etcd lease it was bound to (LeaseKeeper.onKeyDeleted).
      withPreviousKV: true,
      handlers: {
        list: (kvs) => this.onLeaseList(kvs),
        put: (kv) => {
          const lease = this.registry.toLease(kv);
          if (lease) this.onLeaseEvent({ type: "put", lease });
        },
        delete: (kv, previous) => this.onLeaseEvent(this.registry.deleteEvent(kv, previous)),
      },
    });
  }

  async networkConfig(): Promise<NetworkConfig> {
    const log = this.o.log;
    let delay = 500;
    for (;;) {
      try {
        const network = await this.registry.getNetworkConfig();
        log.info({ ipv4: network.ipv4 && formatCidr(network.ipv4.network), ipv6: network.ipv6 && formatCidr(network.ipv6.network), backend: describeBackend(network.backend) }, "network config loaded");
        this.network = network;
        return network;
      } catch (err) {
        if ((err as Error).name === "ConfigError") throw err; // a bad config does not fix itself
        if (this.stopping) throw err;
        log.warn({ err: (err as Error).message, retryInMs: delay }, "waiting for the network config");
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  async previousAttrs(publicIP: IpAddr | undefined, publicIPv6: IpAddr | undefined): Promise<LeaseAttrs | undefined> {
    const { leases } = await this.registry.listLeases();
    const own = leases.find((l) => (l.publicIP && publicIP && ipEquals(l.publicIP, publicIP)) || (l.publicIPv6 && publicIPv6 && ipEquals(l.publicIPv6, publicIPv6)));
    return own?.attrs;
  }

  async acquire(a: AcquireOptions): Promise<Lease> {
    if (!this.network) throw new Error("EtcdSubnetManager.acquire: call networkConfig() first");
    const keeper = new LeaseKeeper({
      registry: this.registry,
      config: this.network,
      publicIP: a.publicIP,
      publicIPv6: a.publicIPv6,
      attrsFor: a.attrs,
      previous: a.previous,
      ttlMs: this.o.ttlMs,
      renewMarginMs: this.o.renewMarginMs,
      log: this.o.log,
    });
    this.keeper = keeper;
    keeper.on("changed", (lease, old) => this.emit("changed", lease, old));
    return keeper.acquire();
  }

  get lease(): Lease | undefined {
    return this.keeper?.lease;
  }

  get healthy(): boolean {
    return this.keeper?.healthy ?? false;
  }

  peers(): Lease[] {
    return [...this.leases.values()];
  }

  /** Lists and watches the peers (EtcdListWatch: relisting with back-off after a failed watch); resolves after the first list. */
  async startPeerWatch(): Promise<void> {
    await this.peerWatch.start();
  }

  /** A complete listing (the first, or a relist after a dead watch) replaces the peers. */
  private onLeaseList(kvs: readonly IKeyValue[]): void {
    const registry = this.registry;
    this.leases.clear();
    for (const kv of kvs) {
      const l = registry.toLease(kv);
      if (l) this.leases.set(registry.keyOf(l.subnet, l.subnet6), l);
    }
    // A relist after a dead watch may be the only sign that our own lease went away.
    const mine = this.keeper?.key;
    if (mine && !this.leases.has(mine)) this.keeper?.onKeyDeleted(mine);
    this.emit("peers");
  }

  private onLeaseEvent(e: LeaseEvent): void {
    const registry = this.registry;
    if (e.type === "put") {
      const key = registry.keyOf(e.lease.subnet, e.lease.subnet6);
      const isNew = !this.leases.has(key);
      this.leases.set(key, e.lease);
      if (isNew) this.o.log.info({ key, node: e.lease.attrs.NodeName, publicIP: e.lease.attrs.PublicIP }, "peer lease added");
    } else {
      this.leases.delete(e.key);
      this.o.log.info({ key: e.key }, "lease removed");
      this.keeper?.onKeyDeleted(e.key, e.etcdLeaseId);
    }
    this.emit("peers");
  }

  /** etcd has no node condition to set. */
  async markReady(): Promise<void> {}

  async stop(): Promise<void> {
    this.stopping = true;
    this.keeper?.stop();
    await this.peerWatch.stop();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
