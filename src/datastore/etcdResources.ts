/**
 * Kubernetes-style objects in etcd (etcd mode): Namespaces, Pods, NetworkPolicies and
 * every later kind of the registry (src/config/resourceKinds.ts), under
 * `<prefix>/<plural>/[<namespace>/]<name>` (src/datastore/resourceKeys.ts).
 *
 * The stored value is the validated object as JSON (defaults filled, as the API server
 * stores it) without metadata.resourceVersion; on read, resourceVersion is the key's etcd
 * mod revision. The store writes only objects that pass their kind's schema and fit the
 * API server's object size (MAX_OBJECT_BYTES, also refused on read), and `applyAll`
 * writes a whole batch in one etcd transaction: all of it or none of it.
 */
import { randomUUID } from "node:crypto";
import type { Etcd3, IKeyValue } from "etcd3";
import { type KubeObject, type ResourceKind, type ValidationIssue, KINDS, RESERVED_PLURALS, apiVersionOf, kindByPlural, objectSizeProblem, validateObject } from "../config/resourceKinds.js";
import { SLUICE_PREFIX, resourceKey } from "./resourceKeys.js";
import { type TextValidated, validateText, validateTextOffThread } from "../config/offThreadValidation.js";
import type { WorkerThread } from "../util/workerThread.js";

/** etcd's default --max-txn-ops: the most writes one transaction may carry. */
export const DEFAULT_MAX_TXN_OPS = 128;

export interface ObjectRef {
  kind: ResourceKind;
  /** Required for namespaced kinds, ignored for cluster-scoped ones. */
  namespace?: string | undefined;
  name: string;
}

export type ApplyOutcome = "created" | "configured" | "unchanged";

export interface ApplyResult {
  kind: ResourceKind;
  namespace: string | undefined;
  name: string;
  outcome: ApplyOutcome;
  /** The object as stored, with metadata.resourceVersion set. */
  object: KubeObject;
}

export interface InvalidStoredValue {
  key: string;
  reason: string;
}

export interface ListResult<T extends KubeObject> {
  items: T[];
  /** Stored values that failed validation (skipped). */
  invalid: InvalidStoredValue[];
  /** The etcd revision of the listing. */
  revision: string;
}

/** Some objects of a batch are invalid; nothing was written. */
export class ResourceValidationError extends Error {
  constructor(readonly problems: { ref: string; issues: ValidationIssue[] }[]) {
    super(problems.map((p) => p.issues.map((i) => `${p.ref}: ${i.path}: ${i.message}`).join("\n")).join("\n"));
    this.name = "ResourceValidationError";
  }
}

/** The batch needs more writes than one etcd transaction may carry; nothing was written. */
export class TooManyOpsError extends Error {
  constructor(
    readonly writes: number,
    readonly maxTxnOps: number,
  ) {
    super(`the batch changes ${writes} objects, more than one etcd transaction may carry (--max-txn-ops ${maxTxnOps}); split the file, or raise etcd's --max-txn-ops and pass the same value to --max-txn-ops here`);
    this.name = "TooManyOpsError";
  }
}

/** A transaction of applyInBatches / deleteInBatches failed: the earlier ones were written. */
export class BatchWriteError extends Error {
  constructor(
    readonly batch: number,
    readonly batches: number,
    readonly written: readonly unknown[],
    readonly total: number,
    readonly failure: Error,
  ) {
    super(`transaction ${batch} of ${batches} failed: ${failure.message.trim()}; ${written.length} of ${total} objects were written by the transactions before it, the rest were not`);
    this.name = "BatchWriteError";
  }
}

/** Where a key under the prefix points. `undefined` for keys outside the layout. */
export type KeyInfo = { type: "object"; kind: ResourceKind; namespace: string | undefined; name: string } | { type: "workloadendpoint"; node: string; namespace: string; pod: string; ifName: string } | { type: "other"; plural: string };

/** Parses a key of the layout; `undefined` when it is not under `prefix` or has the wrong shape for its kind. */
export function parseResourceKey(key: string, prefix = SLUICE_PREFIX, kinds: readonly ResourceKind[] = KINDS): KeyInfo | undefined {
  const p = prefix.replace(/\/$/, "") + "/";
  if (!key.startsWith(p)) return undefined;
  const parts = key.slice(p.length).split("/");
  const plural = parts[0] ?? "";
  if (plural === RESERVED_PLURALS[0]) {
    if (parts.length !== 5 || parts.some((s) => s === "")) return undefined;
    return { type: "workloadendpoint", node: parts[1] as string, namespace: parts[2] as string, pod: parts[3] as string, ifName: parts[4] as string };
  }
  const kind = kindByPlural(plural, kinds);
  if (!kind) return { type: "other", plural };
  const rest = parts.slice(1);
  if (rest.length !== (kind.namespaced ? 2 : 1) || rest.some((s) => s === "")) return undefined;
  return kind.namespaced ? { type: "object", kind, namespace: rest[0], name: rest[1] as string } : { type: "object", kind, namespace: undefined, name: rest[0] as string };
}

/** `copies`: exact copies the kind's withoutCopies dropped (decoded off the thread only). */
export type StoredDecode<T> = { ok: true; object: T; dropped: ValidationIssue[]; copies?: number } | { ok: false; reason: string };

/**
 * Decodes and validates a stored object: at most MAX_OBJECT_BYTES, JSON, the kind's schema,
 * and a name/namespace that match the key (a value copied under the wrong key is refused).
 */
export function decodeStoredObject<T extends KubeObject>(kind: ResourceKind<T>, namespace: string | undefined, name: string, kv: Pick<IKeyValue, "value" | "mod_revision">): StoredDecode<T> {
  const tooBig = objectSizeProblem(kv.value.length);
  if (tooBig !== undefined) return { ok: false, reason: tooBig };
  return checkStored(kind, namespace, name, kv.mod_revision, validateText(kind, kv.value.toString()));
}

/** decodeStoredObject, with the validation of a large value in `thread` (offThreadValidation.ts). */
export async function decodeStoredObjectOffThread<T extends KubeObject>(thread: WorkerThread, kind: ResourceKind<T>, namespace: string | undefined, name: string, kv: Pick<IKeyValue, "value" | "mod_revision">): Promise<StoredDecode<T>> {
  const tooBig = objectSizeProblem(kv.value.length);
  if (tooBig !== undefined) return { ok: false, reason: tooBig };
  return checkStored(kind, namespace, name, kv.mod_revision, await validateTextOffThread(thread, kind, kv.value.toString()));
}

function checkStored<T extends KubeObject>(kind: ResourceKind<T>, namespace: string | undefined, name: string, modRevision: string, v: TextValidated<T>): StoredDecode<T> {
  if (!v.ok) return { ok: false, reason: "notJson" in v ? `not JSON: ${v.notJson}` : v.issues.map((i) => `${i.path}: ${i.message}`).join("; ") };
  const o = v.object;
  if (o.metadata.name !== name) return { ok: false, reason: `metadata.name "${o.metadata.name}" does not match the key` };
  if (kind.namespaced && o.metadata.namespace !== namespace) return { ok: false, reason: `metadata.namespace "${String(o.metadata.namespace)}" does not match the key` };
  return { ok: true, object: { ...o, metadata: { ...o.metadata, resourceVersion: modRevision } }, dropped: v.dropped, ...(v.copies ? { copies: v.copies } : {}) };
}

/** "NetworkPolicy x/deny-all", "Namespace prod": how messages name an object. */
export function describeRef(r: { kind: { kind: string }; namespace?: string | undefined; name: string }): string {
  return `${r.kind.kind} ${r.namespace !== undefined ? `${r.namespace}/` : ""}${r.name}`;
}

export interface EtcdResourceStoreOptions {
  prefix?: string;
  /** Writes per transaction, at most (etcd's --max-txn-ops). */
  maxTxnOps?: number;
  kinds?: readonly ResourceKind[];
}

export class EtcdResourceStore {
  readonly prefix: string;
  readonly maxTxnOps: number;
  readonly kinds: readonly ResourceKind[];

  constructor(
    private readonly client: Etcd3,
    o: EtcdResourceStoreOptions = {},
  ) {
    this.prefix = (o.prefix ?? SLUICE_PREFIX).replace(/\/$/, "");
    this.maxTxnOps = o.maxTxnOps ?? DEFAULT_MAX_TXN_OPS;
    this.kinds = o.kinds ?? KINDS;
  }

  keyOf(ref: ObjectRef): string {
    if (ref.kind.namespaced && !ref.namespace) throw new Error(`${ref.kind.kind} ${ref.name}: a namespace is required`);
    return resourceKey(ref.kind.plural, ref.kind.namespaced ? ref.namespace : undefined, ref.name, this.prefix);
  }

  /** The stored object, validated, or undefined when absent. Throws when the stored value is invalid. */
  async get<T extends KubeObject>(kind: ResourceKind<T>, namespace: string | undefined, name: string): Promise<T | undefined> {
    const ns = kind.namespaced ? namespace : undefined;
    const res = await this.client.get(this.keyOf({ kind: kind as unknown as ResourceKind, namespace: ns, name })).exec();
    const kv = res.kvs[0];
    if (!kv) return undefined;
    const d = decodeStoredObject(kind, ns, name, kv);
    if (!d.ok) throw new Error(`stored ${describeRef({ kind, namespace: ns, name })} is invalid: ${d.reason}`);
    return d.object;
  }

  /** Every object of a kind (in one namespace, or all when `namespace` is undefined), sorted by key. */
  async list<T extends KubeObject>(kind: ResourceKind<T>, namespace?: string): Promise<ListResult<T>> {
    const base = `${this.prefix}/${kind.plural}/` + (kind.namespaced && namespace !== undefined ? `${namespace}/` : "");
    const res = await this.client.getAll().prefix(base).sort("Key", "Ascend").exec();
    const items: T[] = [];
    const invalid: InvalidStoredValue[] = [];
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      const info = parseResourceKey(key, this.prefix, this.kinds);
      if (!info || info.type !== "object" || info.kind.plural !== kind.plural) {
        invalid.push({ key, reason: "key does not fit the layout" });
        continue;
      }
      const d = decodeStoredObject(kind, info.namespace, info.name, kv);
      if (d.ok) items.push(d.object);
      else invalid.push({ key, reason: d.reason });
    }
    return { items, invalid, revision: res.header.revision };
  }

  /** Creates or replaces one object (see applyAll). */
  async put(object: KubeObject): Promise<ApplyResult> {
    return (await this.applyAll([object]))[0] as ApplyResult;
  }

  /**
   * Validates every object, then writes all that differ from what is stored in ONE etcd
   * transaction, guarded by each key's mod revision as read (retried on a concurrent
   * change). Throws ResourceValidationError (nothing written) if any object is invalid or
   * of an unknown kind, TooManyOpsError if the writes exceed one transaction. The same
   * object twice in a batch: the later one wins. creationTimestamp and uid are kept from
   * the stored object (fresh ones on create); resourceVersion in the input is ignored.
   * With `dryRun`, everything is checked and the outcomes computed, but nothing written.
   */
  async applyAll(objects: readonly KubeObject[], o: { dryRun?: boolean } = {}): Promise<ApplyResult[]> {
    return this.writeGroup(this.validateBatch(objects), o);
  }

  /**
   * Validates every object (nothing is written if one is invalid, as applyAll), then
   * writes them in transactions of at most maxTxnOps objects each, in input order, each
   * as applyAll writes its batch; `onWritten` gets each transaction's results once it has
   * committed. A failed transaction throws BatchWriteError carrying what was written before.
   */
  async applyInBatches(objects: readonly KubeObject[], o: { dryRun?: boolean; onWritten?: (results: ApplyResult[]) => void } = {}): Promise<ApplyResult[]> {
    const byKey = this.validateBatch(objects);
    const entries = [...byKey];
    const done: ApplyResult[] = [];
    const batches = Math.ceil(entries.length / this.maxTxnOps);
    for (let b = 0; b < batches; b++) {
      let results: ApplyResult[];
      try {
        results = await this.writeGroup(new Map(entries.slice(b * this.maxTxnOps, (b + 1) * this.maxTxnOps)), o);
      } catch (err) {
        throw new BatchWriteError(b + 1, batches, done, entries.length, err as Error);
      }
      done.push(...results);
      o.onWritten?.(results);
    }
    return done;
  }

  /** The objects keyed by their etcd key (a later duplicate wins), or ResourceValidationError naming every problem. */
  private validateBatch(objects: readonly KubeObject[]): Map<string, { kind: ResourceKind; object: KubeObject }> {
    const problems: { ref: string; issues: ValidationIssue[] }[] = [];
    const byKey = new Map<string, { kind: ResourceKind; object: KubeObject }>();
    objects.forEach((raw, i) => {
      const kind = this.kinds.find((k) => raw.kind === k.kind && raw.apiVersion === apiVersionOf(k));
      const ref = `object ${i + 1} (${raw.kind ?? "?"} ${raw.metadata?.namespace ? `${raw.metadata.namespace}/` : ""}${raw.metadata?.name ?? "?"})`;
      if (!kind) {
        problems.push({ ref, issues: [{ path: "kind", message: `no kind "${String(raw.kind)}" in version "${String(raw.apiVersion)}" is known` }] });
        return;
      }
      const v = validateObject(kind, raw);
      if (!v.ok) {
        problems.push({ ref, issues: v.issues });
        return;
      }
      const object = kind.namespaced ? v.object : { ...v.object, metadata: withoutKey(v.object.metadata, "namespace") };
      // The API server's limit (uid and creationTimestamp add less than 100 bytes).
      const tooBig = objectSizeProblem(Buffer.byteLength(JSON.stringify(object)));
      if (tooBig !== undefined) {
        problems.push({ ref, issues: [{ path: "(root)", message: tooBig }] });
        return;
      }
      byKey.set(this.keyOf({ kind, namespace: object.metadata.namespace, name: object.metadata.name }), { kind, object });
    });
    if (problems.length) throw new ResourceValidationError(problems);
    return byKey;
  }

  /** One guarded transaction for these objects (retried on a concurrent change). */
  private async writeGroup(byKey: ReadonlyMap<string, { kind: ResourceKind; object: KubeObject }>, o: { dryRun?: boolean }): Promise<ApplyResult[]> {
    for (let attempt = 1; ; attempt++) {
      const keys = [...byKey.keys()];
      const current = await Promise.all(keys.map(async (k) => (await this.client.get(k).exec()).kvs[0]));
      const plan = keys.map((key, i) => {
        const { kind, object } = byKey.get(key) as { kind: ResourceKind; object: KubeObject };
        const existing = current[i];
        const prev = existing ? safeJson(existing.value.toString()) : undefined;
        const prevMeta = isRecord(prev) && isRecord(prev["metadata"]) ? prev["metadata"] : {};
        const meta = withoutKey(object.metadata, "resourceVersion");
        meta.creationTimestamp = typeof prevMeta["creationTimestamp"] === "string" ? prevMeta["creationTimestamp"] : nowTimestamp();
        meta.uid = typeof prevMeta["uid"] === "string" ? prevMeta["uid"] : randomUUID();
        const stored = { ...object, metadata: meta };
        const text = JSON.stringify(stored);
        const outcome: ApplyOutcome = !existing ? "created" : canonicalJson(prev) === canonicalJson(stored) ? "unchanged" : "configured";
        return { key, kind, stored, text, outcome, modRevision: existing?.mod_revision };
      });
      const writes = plan.filter((p) => p.outcome !== "unchanged");
      if (writes.length > this.maxTxnOps) throw new TooManyOpsError(writes.length, this.maxTxnOps);
      let revision = "";
      if (writes.length > 0 && o.dryRun !== true) {
        const [first, ...rest] = writes.map((w) => (w.modRevision === undefined ? ([w.key, "Create", "==", 0] as const) : ([w.key, "Mod", "==", w.modRevision] as const)));
        const f = first as readonly [string, "Create" | "Mod", "==", string | number];
        let txn = this.client.if(f[0], f[1], f[2], f[3]);
        for (const c of rest) txn = txn.and(c[0], c[1], c[2], c[3]);
        const res = await txn.then(...writes.map((w) => this.client.put(w.key).value(w.text))).commit();
        if (!res.succeeded) {
          if (attempt >= 5) throw new Error("the objects kept changing while being applied (5 attempts); try again");
          continue;
        }
        revision = res.header.revision;
      }
      return plan.map((p) => {
        const rv = p.outcome === "unchanged" || o.dryRun === true ? (p.modRevision ?? "") : revision;
        return { kind: p.kind, namespace: p.kind.namespaced ? p.stored.metadata.namespace : undefined, name: p.stored.metadata.name, outcome: p.outcome, object: { ...p.stored, metadata: { ...p.stored.metadata, resourceVersion: rv } } };
      });
    }
  }

  /** Deletes one object; false when it did not exist. */
  async delete(ref: ObjectRef): Promise<boolean> {
    return (await this.deleteAll([ref]))[0] as boolean;
  }

  /**
   * deleteAll in transactions of at most maxTxnOps keys, for any number of refs; the
   * answers are in the refs' order (a ref named twice: its first mention). `onDeleted`
   * gets each transaction's refs and answers once it has committed.
   */
  async deleteInBatches(refs: readonly ObjectRef[], onDeleted?: (refs: readonly ObjectRef[], existed: boolean[]) => void): Promise<boolean[]> {
    const first = new Map<string, ObjectRef>();
    for (const r of refs) if (!first.has(this.keyOf(r))) first.set(this.keyOf(r), r);
    const unique = [...first.values()];
    const existed = new Map<string, boolean>();
    const batches = Math.ceil(unique.length / this.maxTxnOps);
    for (let b = 0; b < batches; b++) {
      const group = unique.slice(b * this.maxTxnOps, (b + 1) * this.maxTxnOps);
      let answers: boolean[];
      try {
        answers = await this.deleteAll(group);
      } catch (err) {
        throw new BatchWriteError(b + 1, batches, [...existed.keys()], unique.length, err as Error);
      }
      group.forEach((r, i) => existed.set(this.keyOf(r), answers[i] ?? false));
      onDeleted?.(group, answers);
    }
    const seen = new Set<string>();
    return refs.map((r) => {
      const k = this.keyOf(r);
      const isFirst = !seen.has(k);
      seen.add(k);
      return isFirst && (existed.get(k) ?? false);
    });
  }

  /** Deletes several objects in one transaction; for each, whether it existed. */
  async deleteAll(refs: readonly ObjectRef[]): Promise<boolean[]> {
    if (refs.length === 0) return [];
    const keys = refs.map((r) => this.keyOf(r));
    const unique = [...new Set(keys)];
    if (unique.length > this.maxTxnOps) throw new TooManyOpsError(unique.length, this.maxTxnOps);
    const res = await this.client.kv.txn({ compare: [], success: unique.map((k) => ({ request_delete_range: { key: Buffer.from(k) } })), failure: [] });
    const deleted = new Map(unique.map((k, i) => [k, Number(res.responses[i]?.response_delete_range?.deleted ?? 0) > 0]));
    const seen = new Set<string>();
    // A key named twice existed once: report the first mention.
    return keys.map((k) => {
      const first = !seen.has(k);
      seen.add(k);
      return first && (deleted.get(k) ?? false);
    });
  }

}

function withoutKey<T extends object, K extends keyof T>(o: T, k: K): Omit<T, K> & Partial<Pick<T, K>> {
  const copy = { ...o };
  delete copy[k];
  return copy;
}

/** RFC 3339 in whole seconds, as the API server writes timestamps. */
function nowTimestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** JSON with object keys sorted, so that key order never makes equal objects differ. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (isRecord(v)) {
    return `{${Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}
