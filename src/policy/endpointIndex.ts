/**
 * Which pods and namespaces a selector picks, for one snapshot of the cluster, fast enough
 * for thousands of pods and policies: pods are indexed per namespace by `key=value` and by
 * key, a selector starts from its most selective positive requirement (matchLabels / In /
 * Exists) and filters only those candidates, and every answer is memoized by the
 * selector's canonical text.
 *
 * Namespaces are those listed plus any a pod lives in; every namespace carries the label
 * `kubernetes.io/metadata.name: <name>`, as the API server guarantees (added here when the
 * datastore's copy lacks it, so `namespaceSelector` by name works in etcd mode too).
 */
import { isIPv4 } from "node:net";
import { NAMESPACE_NAME_LABEL, type NamespaceInfo, type PodEndpoint } from "../model/endpoint.js";
import type { LabelSelector } from "../config/k8sSchemas.js";
import { type Family, formatIp, parseIp } from "../model/ip.js";
import { type NamespaceMatch, type PodSet, namespaceMatchKey, podSetKey } from "./ir.js";
import { type Labels, type Requirement, canonicalSelector, requirementsMatch, requirementsOf } from "./selectors.js";

interface Bucket {
  pods: PodEndpoint[];
  byLabel: Map<string, PodEndpoint[]>;
  byKey: Map<string, PodEndpoint[]>;
}

const comparePods = (a: PodEndpoint, b: PodEndpoint): number => (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0);

export class EndpointIndex {
  private readonly buckets = new Map<string, Bucket>();
  private readonly nsLabels = new Map<string, Labels>();
  private readonly nsNames: string[];
  private readonly all: PodEndpoint[];
  private readonly podMemo = new Map<string, PodEndpoint[]>();
  private readonly nsMemo = new Map<string, string[]>();
  private readonly setMemo = new Map<string, PodEndpoint[]>();
  private readonly ipMemo = new Map<PodEndpoint, { 4: string[]; 6: string[] }>();

  constructor(endpoints: readonly PodEndpoint[], namespaces: readonly NamespaceInfo[]) {
    this.all = [...endpoints].sort(comparePods);
    for (const ns of namespaces) this.nsLabels.set(ns.name, { [NAMESPACE_NAME_LABEL]: ns.name, ...ns.labels });
    for (const ep of this.all) {
      if (!this.nsLabels.has(ep.namespace)) this.nsLabels.set(ep.namespace, { [NAMESPACE_NAME_LABEL]: ep.namespace });
      let b = this.buckets.get(ep.namespace);
      if (!b) {
        b = { pods: [], byLabel: new Map(), byKey: new Map() };
        this.buckets.set(ep.namespace, b);
      }
      b.pods.push(ep);
      for (const [k, v] of Object.entries(ep.labels)) {
        push(b.byLabel, `${k}=${v}`, ep);
        push(b.byKey, k, ep);
      }
    }
    this.nsNames = [...this.nsLabels.keys()].sort();
  }

  /** Every pod, sorted by namespace/name. */
  allPods(): readonly PodEndpoint[] {
    return this.all;
  }

  namespaceLabels(name: string): Labels {
    return this.nsLabels.get(name) ?? { [NAMESPACE_NAME_LABEL]: name };
  }

  /** Namespace names a match picks, sorted. A name always picks itself (pods may precede their Namespace). */
  namespaces(m: NamespaceMatch): readonly string[] {
    if (m.kind === "name") return [m.name];
    const key = namespaceMatchKey(m);
    let hit = this.nsMemo.get(key);
    if (!hit) {
      const reqs = requirementsOf(m.selector);
      hit = this.nsNames.filter((n) => requirementsMatch(reqs, this.namespaceLabels(n)));
      this.nsMemo.set(key, hit);
    }
    return hit;
  }

  /** Pods of one namespace matching a selector (`{}` = all), sorted by name. */
  podsInNamespace(namespace: string, sel: LabelSelector): readonly PodEndpoint[] {
    const b = this.buckets.get(namespace);
    if (!b) return [];
    const reqs = requirementsOf(sel);
    if (reqs.length === 0) return b.pods;
    const key = `${namespace}\u0000${canonicalSelector(sel)}`;
    let hit = this.podMemo.get(key);
    if (!hit) {
      const candidates = narrowest(b, reqs);
      hit = candidates.filter((p) => requirementsMatch(reqs, p.labels));
      if (candidates !== b.pods) hit.sort(comparePods); // unions of index lists lose the order
      this.podMemo.set(key, hit);
    }
    return hit;
  }

  /** Members of a pod set, sorted by namespace/name. */
  pods(set: PodSet): readonly PodEndpoint[] {
    if (set.namespaces.kind === "name") return this.podsInNamespace(set.namespaces.name, set.pods);
    const key = podSetKey(set);
    let hit = this.setMemo.get(key);
    if (!hit) {
      hit = [];
      for (const ns of this.namespaces(set.namespaces)) hit.push(...this.podsInNamespace(ns, set.pods));
      this.setMemo.set(key, hit);
    }
    return hit;
  }

  /** A pod's addresses of one family, canonical text (RFC 5952 for IPv6), sorted; bad text is skipped. */
  addresses(ep: PodEndpoint, family: Family): readonly string[] {
    let hit = this.ipMemo.get(ep);
    if (!hit) {
      hit = addressesByFamily(ep);
      this.ipMemo.set(ep, hit);
    }
    return hit[family];
  }
}

/**
 * A pod's addresses per family, canonical text (RFC 5952 for IPv6), sorted and unique; text
 * that is no address is skipped. The one reading of `ips` that the index and the render
 * memo's invalidation share.
 */
export function addressesByFamily(ep: Pick<PodEndpoint, "ips">): { 4: string[]; 6: string[] } {
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  for (const raw of ep.ips) {
    const text = raw.includes("/") ? raw.slice(0, raw.indexOf("/")) : raw;
    if (isIPv4(text)) {
      v4.add(text); // dotted quads without leading zeros are already canonical
      continue;
    }
    let a;
    try {
      a = parseIp(text);
    } catch {
      continue;
    }
    (a.family === 4 ? v4 : v6).add(formatIp(a));
  }
  return { 4: [...v4].sort(), 6: [...v6].sort() };
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/** The smallest candidate list any positive requirement allows (all pods when there is none). */
function narrowest(b: Bucket, reqs: readonly Requirement[]): PodEndpoint[] {
  let best: PodEndpoint[] = b.pods;
  for (const r of reqs) {
    let cand: PodEndpoint[] | undefined;
    if (r.operator === "In") {
      const withKey = b.byKey.get(r.key) ?? [];
      if (r.values.length === 1) cand = b.byLabel.get(`${r.key}=${r.values[0] as string}`) ?? [];
      // More values than pods with the key (a selector may list thousands): those pods are
      // fewer lookups, and a superset the filter then narrows.
      else if (r.values.length >= withKey.length) cand = withKey;
      else {
        const seen = new Set<PodEndpoint>();
        for (const v of r.values) for (const p of b.byLabel.get(`${r.key}=${v}`) ?? []) seen.add(p);
        cand = [...seen];
      }
    } else if (r.operator === "Exists") cand = b.byKey.get(r.key) ?? [];
    if (cand && cand.length < best.length) best = cand;
    if (best.length === 0) break;
  }
  return best;
}
