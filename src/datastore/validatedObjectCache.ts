/**
 * What a policy source (etcd's PolicySource, the Kubernetes KubePolicySource) keeps of the
 * objects it has read, after validation, per key (one object: kind, namespace, name):
 *
 * - A valid version replaces whatever was there.
 * - An invalid version over a good one leaves the last good version in place (a policy
 *   broken by a bad write keeps isolating what it isolated), and the key is reported in
 *   invalidValues() with keptLastGood.
 * - An invalid version of a key that never had a good one is refused: left out of the
 *   values and listed by refused() (kind, namespace, name, reason) when it names an object,
 *   so that the policy model stands a fail-closed deny-all in for a policy of any kind
 *   (buildPolicyModel). A value that names no object (a workload endpoint record, a key
 *   outside the layout) is only ignored.
 * - A good version coming back clears the refusal; a delete forgets the key entirely.
 * - A relist (replaceAll) keeps, for each listed key still invalid, its last good version,
 *   and forgets every key the listing no longer holds.
 *
 * Each transition is logged once (a refusal for the same reason is not logged again), as
 * is the warning for values dropped from an object (addresses no host may have).
 */
import type { Logger } from "pino";
import type { InvalidValue, RefusedObject } from "../model/policySnapshot.js";

/** The object a key stands for; what refused() reports. */
export interface ObjectId {
  kind: string;
  namespace?: string | undefined;
  name: string;
}

/** A version after validation: its value, or why it is refused. */
export type Validation<T> = { ok: true; value: T; /** Values dropped from it, for the warning ("" or undefined: none). */ dropped?: string | undefined } | { ok: false; reason: string };

/** One key of a listing. `id` undefined: the value names no object the model could stand in for. */
export interface CacheEntry<T> {
  key: string;
  id: ObjectId | undefined;
  version: Validation<T>;
}

interface Slot<T> {
  id: ObjectId | undefined;
  /** The last version that passed validation. */
  good: T | undefined;
  /** Why the current version is refused, if it is. */
  invalid: string | undefined;
  /** What was dropped from the good version (so the warning is logged once per change). */
  dropped: string | undefined;
}

export class ValidatedObjectCache<T> {
  private slots = new Map<string, Slot<T>>();

  /**
   * @param what how the logs name a stored version: "value in etcd", "object".
   */
  constructor(
    private readonly log: Logger,
    private readonly what: string,
  ) {}

  /**
   * Applies a new version of `key`. Returns whether what the cache shows changed: the
   * values, or refused() (an invalid version over a good one changes neither).
   */
  put(key: string, id: ObjectId | undefined, version: Validation<T>): boolean {
    const before = this.slots.get(key);
    this.slots.set(key, this.merge(key, id, version, before));
    if (version.ok) return true;
    if (before?.good !== undefined) return false;
    return id !== undefined && before?.invalid !== version.reason;
  }

  /** Forgets `key`. Returns whether what the cache shows changed (it had a good version, or was refused). */
  delete(key: string): boolean {
    const before = this.slots.get(key);
    if (!before) return false;
    this.slots.delete(key);
    return before.good !== undefined || (before.invalid !== undefined && before.id !== undefined);
  }

  /** Replaces everything with a complete listing: listed keys merge as put() does, the others are forgotten. */
  replaceAll(listing: Iterable<CacheEntry<T>>): void {
    const next = new Map<string, Slot<T>>();
    for (const e of listing) next.set(e.key, this.merge(e.key, e.id, e.version, next.get(e.key) ?? this.slots.get(e.key)));
    this.slots = next;
  }

  /** The good version of `key` (the last good one when the current version is refused). */
  get(key: string): T | undefined {
    return this.slots.get(key)?.good;
  }

  /** Keys with a good version, and that version, sorted by key. */
  entries(): Array<[key: string, value: T]> {
    const out: Array<[string, T]> = [];
    for (const key of this.sortedKeys()) {
      const good = (this.slots.get(key) as Slot<T>).good;
      if (good !== undefined) out.push([key, good]);
    }
    return out;
  }

  /** How many keys have a good version. */
  get size(): number {
    let n = 0;
    for (const s of this.slots.values()) if (s.good !== undefined) n++;
    return n;
  }

  /** Objects whose current version is refused and that never had a good one, sorted by key. */
  refused(): RefusedObject[] {
    const out: RefusedObject[] = [];
    for (const key of this.sortedKeys()) {
      const s = this.slots.get(key) as Slot<T>;
      if (s.good === undefined && s.invalid !== undefined && s.id !== undefined) out.push({ kind: s.id.kind, namespace: s.id.namespace, name: s.id.name, reason: s.invalid });
    }
    return out;
  }

  /** Every key whose current version is refused, sorted by key. */
  invalidValues(): InvalidValue[] {
    const out: InvalidValue[] = [];
    for (const key of this.sortedKeys()) {
      const s = this.slots.get(key) as Slot<T>;
      if (s.invalid !== undefined) out.push({ key, reason: s.invalid, keptLastGood: s.good !== undefined });
    }
    return out;
  }

  /** The slot after `version`, logging the transition from `before`. */
  private merge(key: string, id: ObjectId | undefined, version: Validation<T>, before: Slot<T> | undefined): Slot<T> {
    const kind = id?.kind;
    if (version.ok) {
      const dropped = version.dropped || undefined;
      if (before?.invalid !== undefined) this.log.info({ kind, key }, `${this.what} is valid again`);
      if (dropped !== undefined && dropped !== before?.dropped) this.log.warn({ kind, key, dropped }, "values no host may have are dropped from the object; the rest of it applies");
      return { id, good: version.value, invalid: undefined, dropped };
    }
    const good = before?.good;
    if (before?.invalid !== version.reason) {
      const msg = good !== undefined ? `invalid ${this.what}; keeping its last good version` : id !== undefined ? `invalid ${this.what}; refused (a policy gets a fail-closed stand-in)` : `invalid ${this.what}; ignoring it`;
      this.log.warn({ kind, key, reason: version.reason }, msg);
    }
    return { id: good !== undefined ? (before?.id ?? id) : id, good, invalid: version.reason, dropped: before?.dropped };
  }

  private sortedKeys(): string[] {
    return [...this.slots.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }
}
