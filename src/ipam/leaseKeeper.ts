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
  /** Set while the held lease is known to be gone and a new one is being sought. */
  private lost = false;
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

  /** True while we hold a lease that etcd still has; false before the first and while replacing a lost one. */
  get healthy(): boolean {
    return this.held !== undefined && !this.lost;
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

  private async tryAcquire(previous: SubnetChoice | undefined = this.o.previous): Promise<Held> {
    const { registry, config, log } = this.o;
    // Each round re-reads the leases: losing a create race means someone else just took that subnet.
    for (let round = 0; round < 20; round++) {
      const { leases } = await registry.listLeases();
      for (const stale of staleOwnLeases(config, leases, this.o.publicIP, this.o.publicIPv6)) {
        const key = registry.keyOf(stale.subnet, stale.subnet6);
        log.warn({ key }, "deleting this node's lease: it does not fit the current network config");
        await registry.deleteKey(key);
      }
      const choices = rankChoices({ config, leases, publicIP: this.o.publicIP, publicIPv6: this.o.publicIPv6, previous, random: this.o.random ?? Math.random });
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
        this.lose(h);
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

  /**
   * Called by the agent's watch when a lease key disappears. `etcdLeaseId` is the lease
   * the deleted value was bound to: a replayed delete of an older incarnation of our
   * key (after a reconnect) must not cost us the lease we hold now.
   */
  onKeyDeleted(key: string, etcdLeaseId?: string): void {
    const h = this.held;
    if (!h || this.stopped || key !== h.key) return;
    if (etcdLeaseId !== undefined && etcdLeaseId !== h.etcdLeaseId) return;
    this.o.log.warn({ key }, "our subnet lease was revoked or expired; acquiring a new one");
    this.lose(h);
  }

  /**
   * Replaces a lease that is gone. Only the lease that was lost is replaced (a stale
   * signal about an older one is ignored), its subnet is preferred so that running pods
   * keep their addresses, and a failure is retried until it works: meanwhile the old
   * lease stays visible, so the dataplane stays as it is.
   */
  private lose(h: Held): void {
    if (this.held !== h || this.reacquiring || this.stopped) return;
    this.lost = true;
    if (this.timer) clearTimeout(this.timer);
    this.reacquiring = (async () => {
      await this.o.registry.revoke(h.etcdLeaseId).catch(() => undefined);
      for (let delay = 500; !this.stopped; delay = Math.min(delay * 2, 30_000)) {
        try {
          const next = await this.tryAcquire({ subnet: h.lease.subnet, subnet6: h.lease.subnet6 });
          this.held = next;
          this.lost = false;
          this.scheduleRenew();
          this.emit("changed", next.lease, h.lease);
          return;
        } catch (err) {
          this.o.log.error({ err: (err as Error).message, retryInMs: delay }, "could not acquire a new subnet lease; keeping the dataplane as it is");
          await sleep(delay);
        }
      }
    })().finally(() => {
      this.reacquiring = undefined;
    });
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
