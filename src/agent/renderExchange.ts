/**
 * What crosses the thread boundary between the policy engine and its render thread:
 * deltas, not whole snapshots and renders. Writing, sending and parsing a 5,000-pod
 * snapshot and its render as JSON cost more than rendering one pod's label change, and
 * parsed anew on every call the thread's objects were all new, so nothing it memoized by
 * identity (renderMemo.ts, the model's policy IR) could be reused.
 *
 * Both directions use one keyed diff: each side keeps, per collection, the key and JSON
 * fingerprint of every item it last sent (fingerprints memoized by object identity, so an
 * object kept from one snapshot to the next is not stringified again) and sends what was
 * added or changed, the keys removed, and the key order when it changed. The receiving
 * mirror keeps every unchanged item as the same object.
 *
 * Sequence numbers keep the two sides in step: every delta names the one it follows; a
 * mirror that does not hold that one (a new thread after a crash, a reply lost to a
 * timeout) answers "resync" and the sender starts over with everything.
 */
import type { KubeObject } from "../config/resourceKinds.js";
import type { NetworkPolicyObject } from "../config/k8sSchemas.js";
import type { NamespaceInfo, PodEndpoint } from "../model/endpoint.js";
import type { PolicyModelInput } from "../policy/model.js";
import type { RefusedObject } from "../model/policySnapshot.js";
import type { IpsetSpec } from "../render/ipsetSpec.js";
import type { PolicyRender } from "../render/policyContract.js";
import type { ChainSpec } from "../render/ruleset.js";

export interface CollectionDelta<T> {
  upsert: Array<[string, T]>;
  remove: string[];
  /** Every key in order, when the order or the key set changed. */
  order?: string[] | undefined;
}

/** JSON text of an object, memoized by identity. */
export class Fingerprints {
  private readonly memo = new WeakMap<object, string>();
  of(o: object): string {
    let fp = this.memo.get(o);
    if (fp === undefined) {
      fp = JSON.stringify(o);
      this.memo.set(o, fp);
    }
    return fp;
  }
}

/** Keys made unique by occurrence (`k`, `k#2`, ...): a snapshot may hold two items with one key. */
function uniqueKeys(keys: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return keys.map((k) => {
    const n = (seen.get(k) ?? 0) + 1;
    seen.set(k, n);
    return n === 1 ? k : `${k}#${n}`;
  });
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The sending side of one collection. A change touches a few items of thousands, and the
 * sources keep every unchanged item as the same object: the diff walks the list against
 * the previous one by position and looks (key, fingerprint) only at items that are not
 * `unchanged` from the one there before. Only when the length or a key at some position
 * differs (items added, removed or reordered) does it key every item again.
 */
export class KeyedSender<T extends object> {
  private sent = new Map<string, string>();
  private order: string[] = [];
  /** The previous diff's items, their keys before uniqueKeys, and their fingerprints, by position. */
  private items: readonly T[] = [];
  private baseKeys: string[] = [];
  private prints: string[] = [];

  constructor(
    private readonly keyOf: (t: T) => string,
    /** Equal text, equal item (Fingerprints.of, or something cheaper that holds to it). */
    private readonly fingerprint: (t: T) => string,
    /** True only when `t` has the key and fingerprint `before` had (by default: it is the same object). */
    private readonly unchanged: (t: T, before: T) => boolean = (t, before) => t === before,
  ) {}

  diff(items: readonly T[]): CollectionDelta<T> {
    return this.diffInPlace(items) ?? this.diffAll(items);
  }

  /** The delta when every item keeps the key at its position, else undefined (nothing recorded). */
  private diffInPlace(items: readonly T[]): CollectionDelta<T> | undefined {
    if (items.length !== this.items.length) return undefined;
    const changed: Array<[number, string]> = [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as T;
      if (this.unchanged(item, this.items[i] as T)) continue;
      if (this.keyOf(item) !== this.baseKeys[i]) return undefined;
      const fp = this.fingerprint(item);
      if (fp !== this.prints[i]) changed.push([i, fp]);
    }
    const upsert: Array<[string, T]> = [];
    for (const [i, fp] of changed) {
      const key = this.order[i] as string;
      this.prints[i] = fp;
      this.sent.set(key, fp);
      upsert.push([key, items[i] as T]);
    }
    this.items = items;
    return { upsert, remove: [] };
  }

  private diffAll(items: readonly T[]): CollectionDelta<T> {
    const baseKeys = items.map(this.keyOf);
    const keys = uniqueKeys(baseKeys);
    const prints = items.map(this.fingerprint);
    const next = new Map<string, string>();
    const upsert: Array<[string, T]> = [];
    items.forEach((item, i) => {
      const key = keys[i] as string;
      const fp = prints[i] as string;
      next.set(key, fp);
      if (this.sent.get(key) !== fp) upsert.push([key, item]);
    });
    const remove = [...this.sent.keys()].filter((k) => !next.has(k));
    const order = sameList(keys, this.order) ? undefined : keys;
    this.sent = next;
    this.order = keys;
    this.items = items;
    this.baseKeys = baseKeys;
    this.prints = prints;
    return { upsert, remove, order };
  }
}

/** The receiving side of one collection. */
export class KeyedMirror<T> {
  private readonly items = new Map<string, T>();
  private order: string[] = [];
  private list: T[] = [];

  apply(d: CollectionDelta<T>): T[] {
    if (d.upsert.length === 0 && d.remove.length === 0 && d.order === undefined) return this.list;
    for (const k of d.remove) this.items.delete(k);
    for (const [k, v] of d.upsert) this.items.set(k, v);
    if (d.order) this.order = d.order;
    this.list = this.order.map((k) => {
      const v = this.items.get(k);
      if (v === undefined) throw new Error(`render exchange out of step: no item for key ${k}`);
      return v;
    });
    return this.list;
  }
}

// ---------------------------------------------------------------- snapshot: engine -> thread

export interface ModelDelta {
  /** The delta this one follows (0: none, start from empty). */
  base: number;
  seq: number;
  endpoints: CollectionDelta<PodEndpoint>;
  namespaces: CollectionDelta<NamespaceInfo>;
  networkPolicies: CollectionDelta<NetworkPolicyObject>;
  objects: Record<string, CollectionDelta<KubeObject>>;
  refused: RefusedObject[];
}

const endpointKey = (e: PodEndpoint): string => `${e.node}\u0000${e.hostIface}\u0000${e.namespace}\u0000${e.pod}`;
const objectKey = (o: { metadata: { namespace?: string | undefined; name: string } }): string => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;

export class ModelSender {
  private readonly fp = new Fingerprints();
  private readonly of = (o: object): string => this.fp.of(o);
  private endpoints = new KeyedSender<PodEndpoint>(endpointKey, this.of);
  private namespaces = new KeyedSender<NamespaceInfo>((n) => n.name, this.of);
  private networkPolicies = new KeyedSender<NetworkPolicyObject>(objectKey, this.of);
  private objects = new Map<string, KeyedSender<KubeObject>>();
  private seq = 0;

  /** Forgets what was sent: the next delta carries everything (and starts the thread's mirror afresh). */
  reset(): void {
    this.endpoints = new KeyedSender<PodEndpoint>(endpointKey, this.of);
    this.namespaces = new KeyedSender<NamespaceInfo>((n) => n.name, this.of);
    this.networkPolicies = new KeyedSender<NetworkPolicyObject>(objectKey, this.of);
    this.objects = new Map();
    this.seq = 0;
  }

  next(input: PolicyModelInput): ModelDelta {
    const objects: Record<string, CollectionDelta<KubeObject>> = {};
    const kinds = new Set([...Object.keys(input.objects), ...this.objects.keys()]);
    for (const kind of kinds) {
      let s = this.objects.get(kind);
      if (!s) this.objects.set(kind, (s = new KeyedSender<KubeObject>(objectKey, this.of)));
      objects[kind] = s.diff(input.objects[kind] ?? []);
    }
    const base = this.seq;
    this.seq = base + 1;
    return {
      base,
      seq: this.seq,
      endpoints: this.endpoints.diff(input.endpoints),
      namespaces: this.namespaces.diff(input.namespaces),
      networkPolicies: this.networkPolicies.diff(input.networkPolicies),
      objects,
      refused: [...(input.refused ?? [])],
    };
  }
}

export class ModelMirror {
  private endpoints = new KeyedMirror<PodEndpoint>();
  private namespaces = new KeyedMirror<NamespaceInfo>();
  private networkPolicies = new KeyedMirror<NetworkPolicyObject>();
  private objects = new Map<string, KeyedMirror<KubeObject>>();
  private seq = 0;

  /** The model input after `d`, or "resync" when `d` does not follow what this mirror holds. */
  apply(d: ModelDelta): PolicyModelInput | "resync" {
    if (d.base === 0) {
      this.endpoints = new KeyedMirror();
      this.namespaces = new KeyedMirror();
      this.networkPolicies = new KeyedMirror();
      this.objects = new Map();
    } else if (d.base !== this.seq) return "resync";
    const objects: Record<string, readonly KubeObject[]> = {};
    for (const [kind, delta] of Object.entries(d.objects)) {
      let m = this.objects.get(kind);
      if (!m) this.objects.set(kind, (m = new KeyedMirror<KubeObject>()));
      const list = m.apply(delta);
      if (list.length) objects[kind] = list;
    }
    const input: PolicyModelInput = {
      endpoints: this.endpoints.apply(d.endpoints),
      namespaces: this.namespaces.apply(d.namespaces),
      networkPolicies: this.networkPolicies.apply(d.networkPolicies),
      objects,
      refused: d.refused,
    };
    this.seq = d.seq;
    return input;
  }
}

// ---------------------------------------------------------------- render: thread -> engine

/** A PolicyRender with its large lists (chains, raw chains, ipsets) as deltas; the rest is small and sent whole. */
export interface RenderDelta extends Omit<PolicyRender, "chains" | "rawChains" | "ipsets"> {
  chains: CollectionDelta<ChainSpec>;
  rawChains: CollectionDelta<ChainSpec>;
  ipsets: CollectionDelta<IpsetSpec>;
}

export class RenderSender {
  private readonly fp = new Fingerprints();
  /**
   * A chain by its rules list: the render memo hands out a kept policy's rules as the same
   * array inside a new chain object, so that array is what identity can find again.
   */
  private readonly chainPrint = (c: ChainSpec): string => `${c.name}\u0000${this.fp.of(c.rules)}`;
  private readonly setPrint = (s: IpsetSpec): string => this.fp.of(s);
  private readonly sameChain = (c: ChainSpec, before: ChainSpec): boolean => c.rules === before.rules && c.name === before.name;
  private chains = new KeyedSender<ChainSpec>((c) => c.name, this.chainPrint, this.sameChain);
  private rawChains = new KeyedSender<ChainSpec>((c) => c.name, this.chainPrint, this.sameChain);
  private ipsets = new KeyedSender<IpsetSpec>((s) => s.name, this.setPrint);

  /** Forgets what was sent: the next delta carries everything. */
  reset(): void {
    this.chains = new KeyedSender<ChainSpec>((c) => c.name, this.chainPrint, this.sameChain);
    this.rawChains = new KeyedSender<ChainSpec>((c) => c.name, this.chainPrint, this.sameChain);
    this.ipsets = new KeyedSender<IpsetSpec>((s) => s.name, this.setPrint);
  }

  next(r: PolicyRender): RenderDelta {
    return { ...r, chains: this.chains.diff(r.chains), rawChains: this.rawChains.diff(r.rawChains), ipsets: this.ipsets.diff(r.ipsets) };
  }
}

export class RenderMirror {
  private readonly chains = new KeyedMirror<ChainSpec>();
  private readonly rawChains = new KeyedMirror<ChainSpec>();
  private readonly ipsets = new KeyedMirror<IpsetSpec>();

  apply(d: RenderDelta): PolicyRender {
    return { ...d, chains: this.chains.apply(d.chains), rawChains: this.rawChains.apply(d.rawChains), ipsets: this.ipsets.apply(d.ipsets) };
  }
}
