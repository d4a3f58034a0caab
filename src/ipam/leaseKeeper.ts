/**
 * Holds this node's subnet lease: acquires it (own lease, reservation, previous subnet,
 * then a free one), renews it `renewMargin` before it expires, retries on failure, and
 * notices when it is revoked or expires anyway: then it takes a new one and says so.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { NetworkConfig } from "../config/networkConfig.js";
import type { EtcdSubnetRegistry } from "../datastore/etcdSubnetRegistry.js";
import { type IpAddr, formatCidr } from "../model/ip.js";
import type { Lease, LeaseAttrs } from "../model/lease.js";
import { type SubnetChoice, rankChoices, staleOwnLeases } from "./subnetAllocator.js";

export interface LeaseKeeperOptions {
  registry: EtcdSubnetRegistry;
  config: NetworkConfig;
  publicIP: IpAddr | undefined;
  publicIPv6: IpAddr | undefined;
  /** Computes the lease value for the subnets being taken (backend data may depend on them). */
  attrsFor: () => LeaseAttrs;
  previous: SubnetChoice | undefined;
  ttlMs: number;
  renewMarginMs: number;
  log: Logger;
  random?: () => number;
}

interface Held {
  lease: Lease;
  etcdLeaseId: string;
  key: string;
  expiresAt: number;
}

interface LeaseKeeperEvents {
  changed: [lease: Lease, previous: Lease | undefined];
}

export class LeaseKeeper extends EventEmitter<LeaseKeeperEvents> {
  private held: Held | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private reacquiring: Promise<void> | undefined;

  constructor(private readonly o: LeaseKeeperOptions) {
    super();
  }

  get lease(): Lease | undefined {
    return this.held?.lease;
  }

  get key(): string | undefined {
    return this.held?.key;
  }

  /** Acquires a lease, retrying etcd errors with back-off; throws only when the pool is full. */
  async acquire(): Promise<Lease> {
    let delay = 500;
    for (;;) {
      try {
        const held = await this.tryAcquire();
        this.held = held;
        this.scheduleRenew();
        return held.lease;
      } catch (err) {
        if (err instanceof PoolExhaustedError || this.stopped) throw err;
        this.o.log.warn({ err: (err as Error).message, retryInMs: delay }, "could not acquire a subnet lease; retrying");
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  private async tryAcquire(): Promise<Held> {
    const { registry, config, log } = this.o;
    // Each round re-reads the leases: losing a create race means someone else just took that subnet.
    for (let round = 0; round < 20; round++) {
      const { leases } = await registry.listLeases();
      for (const stale of staleOwnLeases(config, leases, this.o.publicIP, this.o.publicIPv6)) {
        const key = registry.keyOf(stale.subnet, stale.subnet6);
        log.warn({ key }, "deleting this node's lease: it does not fit the current network config");
        await registry.deleteKey(key);
      }
      const choices = rankChoices({ config, leases, publicIP: this.o.publicIP, publicIPv6: this.o.publicIPv6, previous: this.o.previous, random: this.o.random ?? Math.random });
      if (choices.length === 0) throw new PoolExhaustedError(config);
      // Try the preferred ones, then a handful of random free ones, before re-listing.
      for (const c of choices.slice(0, 5)) {
        const attrs = this.o.attrsFor();
        const made = c.existing ? await registry.takeOver(c.existing, attrs, this.o.ttlMs) : await registry.create(c.subnet, c.subnet6, attrs, this.o.ttlMs);
        if (!made) continue;
        const key = registry.keyOf(c.subnet, c.subnet6);
        log.info({ subnet: c.subnet && formatCidr(c.subnet), subnet6: c.subnet6 && formatCidr(c.subnet6), reason: c.reason, key, ttlMs: made.etcdLeaseId === "0" ? null : made.ttlMs }, "subnet lease acquired");
        return { lease: made.lease, etcdLeaseId: made.etcdLeaseId, key, expiresAt: made.etcdLeaseId === "0" ? Infinity : Date.now() + made.ttlMs };
      }
    }
    throw new Error("lost the allocation race 20 times in a row");
  }

  private scheduleRenew(): void {
    if (this.timer) clearTimeout(this.timer);
    const h = this.held;
    if (!h || this.stopped || h.expiresAt === Infinity) return;
    const wait = Math.max(0, h.expiresAt - this.o.renewMarginMs - Date.now());
    this.timer = setTimeout(() => void this.renew(), wait);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    const h = this.held;
    if (!h || this.stopped) return;
    try {
      // Give up on one attempt well before the lease would run out, so that a retry fits.
      const ttl = await this.o.registry.renew(h.etcdLeaseId, Math.min(5000, Math.max(250, this.o.renewMarginMs / 4)));
      if (ttl === undefined) {
        this.o.log.warn({ key: h.key }, "subnet lease expired or was revoked before renewal; acquiring a new one");
        await this.reacquire();
        return;
      }
      h.expiresAt = Date.now() + ttl;
      this.o.log.info({ key: h.key, expiresAt: new Date(h.expiresAt).toISOString() }, "subnet lease renewed");
      this.scheduleRenew();
    } catch (err) {
      // Retry well before expiry: a quarter of the margin, at most a minute (flannel retries each minute).
      const retry = Math.min(60_000, Math.max(250, this.o.renewMarginMs / 4));
      this.o.log.warn({ key: h.key, err: (err as Error).message, retryInMs: retry }, "subnet lease renewal failed; retrying");
      this.timer = setTimeout(() => void this.renew(), retry);
      this.timer.unref();
    }
  }

  /** Called by the agent's watch when a lease key disappears. */
  onKeyDeleted(key: string): void {
    if (!this.held || key !== this.held.key || this.stopped) return;
    this.o.log.warn({ key }, "our subnet lease was revoked or expired; acquiring a new one");
    void this.reacquire();
  }

  private reacquire(): Promise<void> {
    if (this.reacquiring) return this.reacquiring;
    const previous = this.held;
    this.reacquiring = (async () => {
      try {
        if (previous) await this.o.registry.revoke(previous.etcdLeaseId);
        this.held = undefined;
        const lease = await this.acquire();
        this.emit("changed", lease, previous?.lease);
      } catch (err) {
        this.o.log.error({ err: (err as Error).message }, "could not acquire a new subnet lease; keeping the dataplane as it is");
      } finally {
        this.reacquiring = undefined;
      }
    })();
    return this.reacquiring;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

export class PoolExhaustedError extends Error {
  constructor(config: NetworkConfig) {
    const pools = [config.ipv4, config.ipv6].filter((p) => p !== undefined).map((p) => `${formatCidr(p.network)} (/${p.subnetLen})`);
    super(`no free subnet left in ${pools.join(" and ")}: every subnet between SubnetMin and SubnetMax is leased or reserved`);
    this.name = "PoolExhaustedError";
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
