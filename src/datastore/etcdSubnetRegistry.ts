/**
 * The subnet registry in etcd, laid out exactly as flannel's:
 *   <prefix>/config             the network config (JSON)
 *   <prefix>/subnets/<key>      one lease per node (LeaseAttrs JSON), bound to an etcd lease
 * A key with no etcd lease is a reservation. Creation is create-if-absent in one
 * transaction, so two nodes can never hold one subnet.
 */
import type { Etcd3, IKeyValue } from "etcd3";
import type { Logger } from "pino";
import { type NetworkConfig, parseNetworkConfig } from "../config/networkConfig.js";
import { type Cidr, parseIp } from "../model/ip.js";
import type { Lease, LeaseAttrs } from "../model/lease.js";
import { parseSubnetKey, subnetKey } from "../model/subnetKey.js";
import { listPaged } from "./etcdListWatch.js";

export interface LeaseList {
  leases: Lease[];
  /** The etcd revision of the listing; watch from revision + 1. */
  revision: string;
}

/**
 * A delete's `key` is rebuilt from the parsed subnets (as puts are), so that a key
 * written in another text form still matches; `etcdLeaseId` is the lease the deleted
 * value was bound to, when etcd sent the previous value.
 */
export type LeaseEvent = { type: "put"; lease: Lease } | { type: "delete"; key: string; subnet: Cidr | undefined; subnet6: Cidr | undefined; etcdLeaseId: string | undefined };

export interface CreatedLease {
  lease: Lease;
  /** The etcd lease id the key is bound to ("0" for a reservation). */
  etcdLeaseId: string;
  ttlMs: number;
}

export class EtcdSubnetRegistry {
  constructor(
    private readonly client: Etcd3,
    readonly prefix: string,
    private readonly log: Logger,
  ) {}

  get subnetsPrefix(): string {
    return `${this.prefix.replace(/\/$/, "")}/subnets/`;
  }

  keyOf(subnet: Cidr | undefined, subnet6: Cidr | undefined): string {
    return this.subnetsPrefix + subnetKey(subnet, subnet6);
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    const key = `${this.prefix.replace(/\/$/, "")}/config`;
    const text = await this.client.get(key).string();
    if (text === null) throw new Error(`no network config at ${key} (write it with: sluicectl config set -f net-conf.json)`);
    return parseNetworkConfig(text, `network config at ${key}`);
  }

  async putNetworkConfig(json: string): Promise<void> {
    parseNetworkConfig(json); // never store what the agents would refuse
    await this.client.put(`${this.prefix.replace(/\/$/, "")}/config`).value(json);
  }

  async listLeases(): Promise<LeaseList> {
    const res = await listPaged(this.client, this.subnetsPrefix, { what: "subnet leases" });
    const leases: Lease[] = [];
    for (const kv of res.kvs) {
      const lease = this.toLease(kv);
      if (lease) leases.push(lease);
    }
    return { leases, revision: res.revision };
  }

  /** Decodes one key/value; a malformed one is skipped with a warning, never fatal. */
  toLease(kv: IKeyValue): Lease | undefined {
    const key = kv.key.toString();
    const name = key.slice(this.subnetsPrefix.length);
    const subnets = parseSubnetKey(name);
    if (!subnets) {
      this.log.warn({ key }, "skipping lease with a malformed key");
      return undefined;
    }
    let attrs: LeaseAttrs;
    try {
      const parsed: unknown = JSON.parse(kv.value.toString());
      if (typeof parsed !== "object" || parsed === null) throw new Error("not a JSON object");
      const o = parsed as Record<string, unknown>;
      if (typeof o["PublicIP"] !== "string" && typeof o["PublicIPv6"] !== "string") throw new Error("has neither PublicIP nor PublicIPv6");
      attrs = {
        PublicIP: typeof o["PublicIP"] === "string" ? o["PublicIP"] : "",
        ...(typeof o["PublicIPv6"] === "string" ? { PublicIPv6: o["PublicIPv6"] } : {}),
        BackendType: typeof o["BackendType"] === "string" ? o["BackendType"] : "",
        BackendData: o["BackendData"],
        BackendV6Data: o["BackendV6Data"],
        ...(typeof o["NodeName"] === "string" ? { NodeName: o["NodeName"] } : {}),
      };
    } catch (err) {
      this.log.warn({ key, err: (err as Error).message }, "skipping lease with a malformed value");
      return undefined;
    }
    let publicIP;
    let publicIPv6;
    try {
      publicIP = attrs.PublicIP ? parseIp(attrs.PublicIP) : undefined;
      publicIPv6 = attrs.PublicIPv6 ? parseIp(attrs.PublicIPv6) : undefined;
    } catch (err) {
      this.log.warn({ key, err: (err as Error).message }, "skipping lease with a malformed PublicIP");
      return undefined;
    }
    return { ...subnets, attrs, publicIP, publicIPv6, leaseId: kv.lease, expiration: undefined, modRevision: kv.mod_revision };
  }

  /**
   * Creates the key if (and only if) it does not exist, bound to a fresh etcd lease.
   * Returns undefined when another node won the race.
   */
  async create(subnet: Cidr | undefined, subnet6: Cidr | undefined, attrs: LeaseAttrs, ttlMs: number): Promise<CreatedLease | undefined> {
    const key = this.keyOf(subnet, subnet6);
    const grant = await this.client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlMs / 1000)) });
    const id = grant.ID;
    const res = await this.client.if(key, "Create", "==", 0).then(this.client.put(key).value(JSON.stringify(withNulls(attrs))).lease(id)).commit();
    if (!res.succeeded) {
      await this.revoke(id);
      return undefined;
    }
    return { lease: this.made(subnet, subnet6, attrs, id, res.header.revision, ttlMs), etcdLeaseId: id, ttlMs };
  }

  /**
   * Takes over an existing key (this node's lease, or a reservation for it) if it is
   * unchanged since `modRevision`. A reservation stays a reservation (no TTL).
   */
  async takeOver(existing: Lease, attrs: LeaseAttrs, ttlMs: number): Promise<CreatedLease | undefined> {
    const key = this.keyOf(existing.subnet, existing.subnet6);
    const reservation = existing.leaseId === "0";
    const id = reservation ? "0" : (await this.client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlMs / 1000)) })).ID;
    const put = this.client.put(key).value(JSON.stringify(withNulls(attrs)));
    if (!reservation) put.lease(id);
    const res = await this.client.if(key, "Mod", "==", existing.modRevision).then(put).commit();
    if (!res.succeeded) {
      if (!reservation) await this.revoke(id);
      return undefined;
    }
    // The old etcd lease now holds nothing; drop it rather than let it linger for a day.
    if (!reservation && existing.leaseId !== id) await this.revoke(existing.leaseId);
    return { lease: this.made(existing.subnet, existing.subnet6, attrs, id, res.header.revision, ttlMs), etcdLeaseId: id, ttlMs };
  }

  /**
   * Renews an etcd lease; returns the new TTL in ms, or undefined if etcd no longer
   * knows it. Throws when etcd does not answer within `timeoutMs`, so the caller can retry.
   */
  async renew(etcdLeaseId: string, timeoutMs = 5000): Promise<number | undefined> {
    return await keepAliveOnce(this.client, etcdLeaseId, timeoutMs);
  }

  async revoke(etcdLeaseId: string): Promise<void> {
    if (etcdLeaseId === "0") return;
    try {
      await this.client.leaseClient.leaseRevoke({ ID: etcdLeaseId });
    } catch (err) {
      this.log.debug({ etcdLeaseId, err: (err as Error).message }, "revoke failed (lease already gone?)");
    }
  }

  /** Writes a reservation: a lease key with no etcd lease, which allocation never takes from its node. */
  async reserve(subnet: Cidr | undefined, subnet6: Cidr | undefined, attrs: LeaseAttrs): Promise<void> {
    await this.client.put(this.keyOf(subnet, subnet6)).value(JSON.stringify(withNulls(attrs)));
  }

  async deleteKey(key: string): Promise<void> {
    await this.client.delete().key(key);
  }

  /**
   * A watched delete as a LeaseEvent; `previous` is the deleted value, when the watch asked
   * for it (withPreviousKV). A put is toLease's.
   */
  deleteEvent(kv: IKeyValue, previous: IKeyValue | undefined): Extract<LeaseEvent, { type: "delete" }> {
    const raw = kv.key.toString();
    const parsed = parseSubnetKey(raw.slice(this.subnetsPrefix.length));
    const key = parsed ? this.keyOf(parsed.subnet, parsed.subnet6) : raw;
    return { type: "delete", key, subnet: parsed?.subnet, subnet6: parsed?.subnet6, etcdLeaseId: previous?.lease };
  }

  private made(subnet: Cidr | undefined, subnet6: Cidr | undefined, attrs: LeaseAttrs, id: string, revision: string, ttlMs: number): Lease {
    return {
      subnet,
      subnet6,
      attrs,
      publicIP: attrs.PublicIP ? parseIp(attrs.PublicIP) : undefined,
      publicIPv6: attrs.PublicIPv6 ? parseIp(attrs.PublicIPv6) : undefined,
      leaseId: id,
      expiration: id === "0" ? undefined : new Date(Date.now() + ttlMs),
      modRevision: revision,
    };
  }
}

/** flannel writes `"PublicIPv6":null` when there is none; keep the same shape. */
function withNulls(attrs: LeaseAttrs): Record<string, unknown> {
  const { PublicIP, PublicIPv6, ...rest } = attrs;
  return { PublicIP, PublicIPv6: PublicIPv6 ?? null, ...rest };
}

/** One keep-alive round trip over the lease stream: returns the renewed TTL in ms. */
async function keepAliveOnce(client: Etcd3, id: string, timeoutMs: number): Promise<number | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`etcd did not answer the keep-alive within ${timeoutMs}ms`)), timeoutMs);
  });
  const opening = client.leaseClient.leaseKeepAlive();
  let stream;
  try {
    stream = await Promise.race([opening, deadline]);
  } catch (err) {
    clearTimeout(timer);
    // A stream that opens after we gave up must still be closed.
    opening.then((s) => s.end()).catch(() => undefined);
    throw err;
  }
  try {
    return await Promise.race([
      new Promise<number | undefined>((resolve, reject) => {
        stream.on("data", (res: { TTL: string }) => resolve(Number(res.TTL) > 0 ? Number(res.TTL) * 1000 : undefined));
        stream.on("error", reject);
        stream.write({ ID: id });
      }),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
    stream.end();
  }
}
