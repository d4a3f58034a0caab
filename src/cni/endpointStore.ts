/**
 * etcd mode: the WorkloadEndpointRecord of each wired pod interface, at
 * workloadEndpointKey(node, namespace, pod, ifName). etcd3 (and gRPC under it) is loaded
 * only here and only when the netconf names etcd endpoints, so plain ADDs start fast.
 */
import { createRequire } from "node:module";
import type { Etcd3 } from "etcd3";
import type { WorkloadEndpointRecord } from "../model/endpoint.js";
import { workloadEndpointKey, workloadEndpointPrefix } from "../datastore/resourceKeys.js";
import { CNI_ERR, CniError } from "./errors.js";

/** Each etcd call gets this long; a plugin must not hang the runtime. */
const OP_TIMEOUT_MS = 5000;

export interface StoredEndpoint {
  key: string;
  record: WorkloadEndpointRecord;
}

export class EndpointStore {
  private constructor(
    private readonly client: Etcd3,
    readonly endpoints: readonly string[],
    readonly prefix: string,
  ) {}

  static open(endpoints: readonly string[], prefix: string): EndpointStore {
    // A plain require at run time: esbuild leaves etcd3 external, and nothing loads it unless we get here.
    const load = createRequire(__filename);
    const { Etcd3: Client } = load("etcd3") as typeof import("etcd3");
    return new EndpointStore(new Client({ hosts: [...endpoints], dialTimeout: 3000 }), endpoints, prefix);
  }

  keyOf(r: Pick<WorkloadEndpointRecord, "node" | "namespace" | "pod" | "ifName">): string {
    return workloadEndpointKey(r.node, r.namespace, r.pod, r.ifName, this.prefix);
  }

  private async op<T>(what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${OP_TIMEOUT_MS} ms`)), OP_TIMEOUT_MS);
    });
    try {
      return await Promise.race([p, timeout]);
    } catch (err) {
      throw new CniError(CNI_ERR.tryAgainLater, `etcd (${this.endpoints.join(",")}): ${what} failed: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async put(r: WorkloadEndpointRecord): Promise<string> {
    const key = this.keyOf(r);
    await this.op(`writing ${key}`, this.client.put(key).value(JSON.stringify(r)).exec());
    return key;
  }

  /** Deletes the record at `key` if it belongs to `containerId` (a newer pod of the same name keeps its own). */
  async remove(key: string, containerId: string): Promise<boolean> {
    const raw = await this.op(`reading ${key}`, this.client.get(key).string());
    if (raw === null) return false;
    let owner: string | undefined;
    try {
      owner = (JSON.parse(raw) as Partial<WorkloadEndpointRecord>).containerId;
    } catch {
      owner = undefined;
    }
    if (owner !== containerId) return false;
    const res = await this.op(`deleting ${key}`, this.client.if(key, "Value", "==", raw).then(this.client.delete().key(key)).commit());
    return res.succeeded;
  }

  /** Every record of one node. */
  async listNode(node: string): Promise<StoredEndpoint[]> {
    const kvs = await this.op(`listing ${workloadEndpointPrefix(node, this.prefix)}`, this.client.getAll().prefix(workloadEndpointPrefix(node, this.prefix)).strings());
    const out: StoredEndpoint[] = [];
    for (const [key, value] of Object.entries(kvs)) {
      try {
        out.push({ key, record: JSON.parse(value) as WorkloadEndpointRecord });
      } catch {
        /* not ours to judge */
      }
    }
    return out;
  }

  close(): void {
    this.client.close();
  }
}
