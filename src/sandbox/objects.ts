/**
 * Where a sandbox keeps its Namespace and Pod objects: etcd (the resource layout under
 * /sluice/v1, as `sluicectl apply` writes it), or, in Kubernetes mode, an API server the
 * caller runs (a test's fake API server inside the sandbox's underlay namespace), written
 * as a kubelet and kubectl would. pods.ts speaks only this interface.
 */
import type { Etcd3 } from "etcd3";
import { type EtcdConnection, connectEtcd } from "../datastore/etcdClient.js";
import { namespaceKey, podKey, workloadEndpointPrefix, SLUICE_PREFIX } from "../datastore/resourceKeys.js";

export type SandboxKind = "Namespace" | "Pod";

/** An object as stored: apiVersion, kind, metadata.name (and namespace for pods). */
export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string | undefined; [k: string]: unknown };
  [k: string]: unknown;
}

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string | undefined;
  name: string;
}

/**
 * The controls of a Kubernetes API server the sandbox writes its objects to (the fake API
 * server's controls fit): create-or-replace, delete, read, list one kind.
 */
export interface KubeObjectsApi {
  put(o: StoredObject): Promise<unknown>;
  remove(ref: ObjectRef): Promise<boolean>;
  get(ref: ObjectRef): Promise<unknown>;
  list(apiVersion: string, kind: string): Promise<unknown[]>;
}

/** A Kubernetes API server the sandbox's agents use (--kube-subnet-mgr). */
export interface SandboxKubeApi {
  /** What the agents pass as --kube-api-url; reachable from every node namespace. */
  url: string;
  objects: KubeObjectsApi;
  stop(): Promise<void>;
}

export interface SandboxObjects {
  get(kind: SandboxKind, namespace: string | undefined, name: string): Promise<unknown>;
  list(kind: SandboxKind, namespace?: string): Promise<unknown[]>;
  /** Creates the object unless one of that name exists; false when it does. */
  create(o: StoredObject): Promise<boolean>;
  /** Creates or replaces. */
  put(o: StoredObject): Promise<void>;
  /** False when there was none. */
  delete(kind: SandboxKind, namespace: string | undefined, name: string): Promise<boolean>;
  /**
   * A pod that is gone: its workload endpoints, which its node's agent deletes once the
   * plugin's DEL has removed the pod's record on the node (and cannot when DEL did not run,
   * or the node went with the pod).
   */
  forgetEndpoints(node: string, namespace: string, pod: string): Promise<void>;
}

const keyOf = (kind: SandboxKind, namespace: string | undefined, name: string): string => (kind === "Namespace" ? namespaceKey(name) : podKey(namespace ?? "default", name));
const prefixOf = (kind: SandboxKind, namespace?: string): string => (kind === "Namespace" ? `${SLUICE_PREFIX}/namespaces/` : `${SLUICE_PREFIX}/pods/${namespace ? `${namespace}/` : ""}`);
const kindOf = (o: StoredObject): SandboxKind => {
  if (o.kind !== "Namespace" && o.kind !== "Pod") throw new Error(`the sandbox stores Namespaces and Pods, not ${o.kind}`);
  return o.kind;
};

export class EtcdObjects implements SandboxObjects {
  constructor(private readonly connection: EtcdConnection) {}

  private async with<T>(fn: (c: Etcd3) => Promise<T>): Promise<T> {
    const c = connectEtcd(this.connection);
    try {
      return await fn(c);
    } finally {
      c.close();
    }
  }

  get(kind: SandboxKind, namespace: string | undefined, name: string): Promise<unknown> {
    return this.with(async (c) => {
      const text = await c.get(keyOf(kind, namespace, name)).string();
      return text === null ? undefined : (JSON.parse(text) as unknown);
    });
  }

  list(kind: SandboxKind, namespace?: string): Promise<unknown[]> {
    return this.with(async (c) => Object.values(await c.getAll().prefix(prefixOf(kind, namespace)).strings()).map((t) => JSON.parse(t) as unknown));
  }

  create(o: StoredObject): Promise<boolean> {
    const key = keyOf(kindOf(o), o.metadata.namespace, o.metadata.name);
    return this.with(async (c) => (await c.if(key, "Create", "==", 0).then(c.put(key).value(JSON.stringify(o))).commit()).succeeded);
  }

  put(o: StoredObject): Promise<void> {
    return this.with(async (c) => {
      await c.put(keyOf(kindOf(o), o.metadata.namespace, o.metadata.name)).value(JSON.stringify(o));
    });
  }

  delete(kind: SandboxKind, namespace: string | undefined, name: string): Promise<boolean> {
    return this.with(async (c) => (await c.delete().key(keyOf(kind, namespace, name))).deleted !== "0");
  }

  forgetEndpoints(node: string, namespace: string, pod: string): Promise<void> {
    return this.with(async (c) => {
      await c.delete().prefix(`${workloadEndpointPrefix(node)}${namespace}/${pod}/`);
    });
  }
}

/** Objects in a Kubernetes API server; the single writer is the sandbox, so get-then-put is create. */
export class KubeObjects implements SandboxObjects {
  constructor(private readonly api: KubeObjectsApi) {}

  async get(kind: SandboxKind, namespace: string | undefined, name: string): Promise<unknown> {
    return (await this.api.get({ apiVersion: "v1", kind, namespace: kind === "Pod" ? namespace : undefined, name })) ?? undefined;
  }

  async list(kind: SandboxKind, namespace?: string): Promise<unknown[]> {
    const all = await this.api.list("v1", kind);
    return namespace === undefined ? all : all.filter((o) => (o as StoredObject).metadata.namespace === namespace);
  }

  async create(o: StoredObject): Promise<boolean> {
    if ((await this.get(kindOf(o), o.metadata.namespace, o.metadata.name)) !== undefined) return false;
    await this.api.put(o);
    return true;
  }

  async put(o: StoredObject): Promise<void> {
    await this.api.put(o);
  }

  delete(kind: SandboxKind, namespace: string | undefined, name: string): Promise<boolean> {
    return this.api.remove({ apiVersion: "v1", kind, namespace: kind === "Pod" ? namespace : undefined, name });
  }

  /** The plugin keeps no records in the API server (the kubelet reports pod addresses). */
  async forgetEndpoints(): Promise<void> {}
}
