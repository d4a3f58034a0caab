/**
 * etcd mode: this node's workload endpoints in etcd, published by the agent from the
 * records sluice-cni writes on the node (src/agent/localEndpoints.ts reads them). The
 * plugin talks to no datastore, so the etcd that holds every policy needs to answer only
 * the agents (and sluicectl), with their credentials, never a plugin on every node.
 *
 * Contract: `<prefix>/workloadendpoints/<node>/` holds exactly the node's records, each
 * the record as the plugin wrote it with `node` set to this agent's node name. A sync
 * reads that prefix, writes what is missing or different and deletes what no record
 * stands for (compare-and-delete on the key's mod revision, so a key someone rewrote
 * meanwhile is left for the next sync); it writes nothing when all is in place. It runs
 * at start, on every change of the records, on a timer (repairing what someone else
 * changed), and after a failure with back-off; syncs never overlap.
 *
 * The agent's own policy source reads these keys back from its etcd watch, like every
 * other node's: a new pod is programmed on its node from the same etcd revision that
 * tells the other nodes about it, and while etcd is unreachable a new pod stays
 * unprogrammed (its traffic dropped; with policyReadyTimeoutMs its ADD fails), as it did
 * when the plugin wrote the record itself. What it does not do: delete the endpoints of a
 * node that is gone (nobody runs its agent; `sluicectl sandbox node remove` does it in
 * the sandbox, as an operator would on a host).
 */
import type { Etcd3 } from "etcd3";
import type { Logger } from "pino";
import type { WorkloadEndpointRecord } from "../model/endpoint.js";
import type { LocalEndpointRecords } from "./kubePolicySource.js";
import { withTimeout } from "./withTimeout.js";
import { SLUICE_PREFIX, workloadEndpointKey, workloadEndpointPrefix } from "./resourceKeys.js";
import { SerialRerun } from "../util/serialRerun.js";

export interface StoredValue {
  value: string;
  modRevision: string;
}

export interface PublishPlan {
  puts: Array<{ key: string; value: string }>;
  deletes: Array<{ key: string; modRevision: string }>;
}

/** The stored form of a record: the plugin's fields in the plugin's order, `node` this agent's. */
export function publishedValue(r: WorkloadEndpointRecord, node: string): string {
  const out: WorkloadEndpointRecord = { node, namespace: r.namespace, pod: r.pod, containerId: r.containerId, ifName: r.ifName, hostIface: r.hostIface, ips: [...r.ips], ...(r.mac !== undefined ? { mac: r.mac } : {}) };
  return JSON.stringify(out);
}

/**
 * What makes `stored` (the node's keys) equal to `records`. Pure. Two records for one key
 * (the same pod and interface in two files, which the plugin never writes) publish the
 * one of the first host interface in name order.
 */
export function planEndpointPublish(node: string, prefix: string, records: readonly WorkloadEndpointRecord[], stored: ReadonlyMap<string, StoredValue>): PublishPlan {
  const want = new Map<string, string>();
  for (const r of [...records].sort((a, b) => (a.hostIface < b.hostIface ? -1 : a.hostIface > b.hostIface ? 1 : 0))) {
    const key = workloadEndpointKey(node, r.namespace, r.pod, r.ifName, prefix);
    if (!want.has(key)) want.set(key, publishedValue(r, node));
  }
  const puts = [...want].filter(([key, value]) => stored.get(key)?.value !== value).map(([key, value]) => ({ key, value }));
  const deletes = [...stored].filter(([key]) => !want.has(key)).map(([key, v]) => ({ key, modRevision: v.modRevision }));
  const byKey = (a: { key: string }, b: { key: string }): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  return { puts: puts.sort(byKey), deletes: deletes.sort(byKey) };
}

export interface EtcdEndpointPublisherOptions {
  client: Etcd3;
  log: Logger;
  nodeName: string;
  local: LocalEndpointRecords;
  /** The resource prefix (the agent's --resource-prefix). */
  prefix?: string;
  /** Full check period; default 60 s. */
  resyncMs?: number;
  /** First retry after a failed sync; doubles up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  requestTimeoutMs?: number;
}

export class EtcdEndpointPublisher {
  private readonly prefix: string;
  private timer: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private readonly syncRuns = new SerialRerun(() => this.syncOnce(), () => this.stopped);
  private stopped = false;
  private backoffMs: number;
  private failing = false;
  private syncs = 0;

  constructor(private readonly o: EtcdEndpointPublisherOptions) {
    this.prefix = (o.prefix ?? SLUICE_PREFIX).replace(/\/$/, "");
    this.backoffMs = o.initialBackoffMs ?? 500;
  }

  /** Successful syncs so far. */
  get syncCount(): number {
    return this.syncs;
  }

  /** Publishes now and keeps publishing; never throws (failures are logged and retried). */
  start(): void {
    this.o.local.on("changed", () => void this.sync());
    this.timer = setInterval(() => void this.sync(), this.o.resyncMs ?? 60_000);
    this.timer.unref();
    void this.sync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retry) clearTimeout(this.retry);
    await this.syncRuns.current;
  }

  /** One sync (a request during a sync runs one more after it); resolves when done, failed or not. */
  sync(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return this.syncRuns.request();
  }

  private async syncOnce(): Promise<void> {
    const { client, log, nodeName } = this.o;
    const timeout = this.o.requestTimeoutMs ?? 10_000;
    const nodePrefix = workloadEndpointPrefix(nodeName, this.prefix);
    try {
      const res = await withTimeout(client.getAll().prefix(nodePrefix).exec(), timeout, `listing ${nodePrefix}`);
      const stored = new Map(res.kvs.map((kv) => [kv.key.toString(), { value: kv.value.toString(), modRevision: kv.mod_revision }]));
      const plan = planEndpointPublish(nodeName, this.prefix, this.o.local.records(), stored);
      for (const p of plan.puts) await withTimeout(client.put(p.key).value(p.value).exec(), timeout, `writing ${p.key}`);
      let kept = 0;
      for (const d of plan.deletes) {
        const r = await withTimeout(client.if(d.key, "Mod", "==", d.modRevision).then(client.delete().key(d.key)).commit(), timeout, `deleting ${d.key}`);
        if (!r.succeeded) kept++;
      }
      if (plan.puts.length || plan.deletes.length) log.info({ published: plan.puts.map((p) => p.key), deleted: plan.deletes.length - kept, changedMeanwhile: kept }, "workload endpoints published to etcd");
      if (this.failing) log.info("publishing workload endpoints to etcd works again");
      this.failing = false;
      this.backoffMs = this.o.initialBackoffMs ?? 500;
      this.syncs++;
    } catch (err) {
      if (!this.failing) log.warn({ err: (err as Error).message }, "cannot publish this node's workload endpoints to etcd; new pods stay unprogrammed until it works (retrying)");
      this.failing = true;
      if (this.stopped || this.retry) return;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs ?? 10_000);
      this.retry = setTimeout(() => {
        this.retry = undefined;
        void this.sync();
      }, delay);
      this.retry.unref();
    }
  }
}
