/**
 * What a policy render can keep from the previous one (Felix's calculation graph idea, in
 * our shape): the expensive parts of a render are the members of every ipset (a selector
 * over every pod, per set) and the compiled rules of every policy. Neither changes for
 * most changes: a pod's labels touch only the sets whose selectors match its old or its
 * new labels; a policy's rules depend on the policy alone (set names hash definitions,
 * not members).
 *
 * So a RenderMemo, handed to renderPolicyIr render after render, keeps
 * - each set's spec by definition, with the source its members were computed from (as
 *   data: a pod set, a named port of a pod set, a node selector, ...),
 * - each policy's compiled chains per direction, with the sets its rules use, and
 * - each endpoint and dispatch chain's rules, with the text of what they were made from,
 * and before each render compares the new input with the one it last saw: an endpoint
 * added, removed or changed drops the sets whose members its old or new version moves (a
 * relabel that keeps a pod in a set, or any label change for a set of named ports, keeps
 * the set); a change to
 * namespaces (labels, or which exist) drops every pod-derived set; a change to nodes or
 * network sets drops theirs. Everything not dropped is reused as the same objects, so the
 * result is equal to a render without a memo (a property test holds it to that over
 * thousands of random change sequences: test/unit/renderMemo.test.ts).
 *
 * Pure: no I/O, no clock; one memo per family and SCTP capability (both shape the rules).
 * Entries a render does not use are dropped after it, so the memo never outgrows the
 * cluster.
 */
import type { LabelSelector } from "../config/k8sSchemas.js";
import { NAMESPACE_NAME_LABEL, type NamespaceInfo, type PodEndpoint, type Protocol } from "../model/endpoint.js";
import type { Family } from "../model/ip.js";
import type { NetworkSetInfo, NodeInfo } from "../policy/model.js";
import type { Direction, NetworkSetMatch, PodSet, PolicyIR } from "../policy/ir.js";
import { addressesByFamily } from "../policy/endpointIndex.js";
import { type Labels, requirementsMatch, requirementsOf } from "../policy/selectors.js";
import type { IpsetSpec, IpsetType } from "./ipsetSpec.js";
import type { ChainSpec } from "./ruleset.js";

/** What a set's members are computed from: its definition as data. */
export type SetSource =
  | { kind: "pods"; set: PodSet }
  | { kind: "ports"; set: PodSet | "all"; name: string; protocol: Protocol }
  | { kind: "nodes"; selector: LabelSelector }
  | { kind: "networkSets"; match: NetworkSetMatch }
  /** An ipBlock (CIDR minus exceptions): its members follow from the definition alone. */
  | { kind: "net"; cidr: string; except: readonly string[] };

/** A set a policy's rules use: enough to register it again without compiling the policy. */
export interface SetUse {
  type: IpsetType;
  def: string;
  source: SetSource;
}

/** A policy's chains for one direction, as renderPolicyRules made them. */
export interface CompiledPolicy {
  rules: ChainSpec["rules"];
  extra: ChainSpec[];
  allows: boolean;
  passes: boolean;
  sets: SetUse[];
}

export interface RenderMemoInput {
  endpoints: readonly PodEndpoint[];
  namespaces: readonly NamespaceInfo[];
  nodes: readonly NodeInfo[];
  networkSets: readonly NetworkSetInfo[];
}

/** How much of the last render was reused (tests, logs and benchmarks read it). */
export interface RenderMemoStats {
  setsReused: number;
  setsComputed: number;
  policiesReused: number;
  policiesCompiled: number;
  /** Endpoint versions (old and new) that changed since the previous render. */
  endpointsChanged: number;
}

/** An endpoint version that came (n > 0) or went (n < 0) since the previous render, n times. */
interface EndpointChange {
  ep: PodEndpoint;
  n: number;
}

interface SetEntry {
  spec: IpsetSpec;
  source: SetSource;
  used: number;
}

export class RenderMemo {
  private readonly sets = new Map<string, SetEntry>();
  private readonly policies = new Map<string, { compiled: CompiledPolicy; used: number }>();
  /** Per chain name: what its rules were made of (as text) and the rules, kept as the same array. */
  private readonly derived = new Map<string, { key: string; rules: ChainSpec["rules"]; used: number }>();
  /** The endpoints last seen, with how often each object occurs (a multiset: two equal records may exist). */
  private endpoints = new Map<PodEndpoint, number>();
  private readonly endpointAddresses = new WeakMap<PodEndpoint, readonly string[]>();
  private namespacesKey: string | undefined;
  private clusterKey: string | undefined;
  private generation = 0;
  private readonly fingerprints = new WeakMap<object, string>();
  private readonly policyKeys = new WeakMap<PolicyIR, Record<Direction, string>>();
  stats: RenderMemoStats = { setsReused: 0, setsComputed: 0, policiesReused: 0, policiesCompiled: 0, endpointsChanged: 0 };

  constructor(
    readonly family: Family,
    readonly sctpSupported: boolean,
  ) {}

  /** Compares `input` with the previous render's and drops what it invalidates. Call once per render, first. */
  begin(input: RenderMemoInput): void {
    this.generation++;
    this.stats = { setsReused: 0, setsComputed: 0, policiesReused: 0, policiesCompiled: 0, endpointsChanged: 0 };
    const known = input.endpoints.filter((ep) => ep.metadataKnown !== false);
    // Which namespaces exist (listed, or implied by a pod) and their labels: what every namespace selector reads.
    const nsLabels = new Map<string, Labels>();
    for (const ns of input.namespaces) nsLabels.set(ns.name, { [NAMESPACE_NAME_LABEL]: ns.name, ...ns.labels });
    for (const ep of known) if (!nsLabels.has(ep.namespace)) nsLabels.set(ep.namespace, { [NAMESPACE_NAME_LABEL]: ep.namespace });
    const namespacesKey = JSON.stringify([...nsLabels].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
    const clusterKey = JSON.stringify([input.nodes, input.networkSets]);

    // Which endpoint versions came or went: by identity first (the datastore and the
    // render exchange hand an unchanged endpoint on as the same object), then netted by
    // content, so that an equal copy (after a resync of the thread, say) changes nothing.
    const next = new Map<PodEndpoint, number>();
    for (const ep of known) next.set(ep, (next.get(ep) ?? 0) + 1);
    const byContent = new Map<string, EndpointChange>();
    const note = (ep: PodEndpoint, n: number): void => {
      const fp = this.fingerprint(ep);
      const e = byContent.get(fp);
      if (e) e.n += n;
      else byContent.set(fp, { ep, n });
    };
    for (const [ep, n] of this.endpoints) if (next.get(ep) !== n) note(ep, (next.get(ep) ?? 0) - n);
    for (const [ep, n] of next) if (!this.endpoints.has(ep)) note(ep, n);
    const changed = [...byContent.values()].filter((e) => e.n !== 0);
    this.endpoints = next;
    this.stats.endpointsChanged = changed.length;

    const namespacesChanged = namespacesKey !== this.namespacesKey;
    const clusterChanged = clusterKey !== this.clusterKey || namespacesChanged;
    this.namespacesKey = namespacesKey;
    this.clusterKey = clusterKey;
    for (const [def, entry] of this.sets) {
      const s = entry.source;
      const drop =
        s.kind === "pods" || s.kind === "ports"
          ? namespacesChanged || (changed.length > 0 && this.membersMove(s, changed, nsLabels))
          : s.kind === "nodes" || s.kind === "networkSets"
            ? clusterChanged
            : false;
      if (drop) this.sets.delete(def);
    }
  }

  /**
   * Whether the changed endpoint versions move a pod-derived set's members. Members are the
   * union of what each member pod contributes (its addresses, or its address-port pairs of
   * the named port), so when the versions that came contribute, as a multiset, what the
   * versions that went did, the set is unchanged: a relabel that keeps a pod in (or out of)
   * a set, and every label change for a set that reads only ports, keeps the set.
   */
  private membersMove(s: Extract<SetSource, { kind: "pods" | "ports" }>, changed: readonly EndpointChange[], nsLabels: ReadonlyMap<string, Labels>): boolean {
    const net = new Map<string, number>();
    for (const { ep, n } of changed) {
      if (!belongs(s, ep, nsLabels)) continue;
      const addresses = this.addresses(ep);
      if (addresses.length === 0) continue;
      const c = s.kind === "pods" ? addresses.join(",") : `${addresses.join(",")}|${ep.ports.filter((p) => p.name === s.name && p.protocol === s.protocol).map((p) => p.containerPort).sort((a, b) => a - b).join(",")}`;
      net.set(c, (net.get(c) ?? 0) + n);
    }
    for (const n of net.values()) if (n !== 0) return true;
    return false;
  }

  /** An endpoint's addresses of the memo's family, as the index reads them (memoized by identity). */
  private addresses(ep: PodEndpoint): readonly string[] {
    let a = this.endpointAddresses.get(ep);
    if (a === undefined) {
      a = addressesByFamily(ep)[this.family];
      this.endpointAddresses.set(ep, a);
    }
    return a;
  }

  /** The spec of a set by definition: the kept one, or `make()`'s, kept for next time. */
  set(def: string, source: SetSource, make: () => IpsetSpec): IpsetSpec {
    const hit = this.sets.get(def);
    if (hit) {
      hit.used = this.generation;
      this.stats.setsReused++;
      return hit.spec;
    }
    const spec = make();
    this.sets.set(def, { spec, source, used: this.generation });
    this.stats.setsComputed++;
    return spec;
  }

  /** A policy's compiled chains for one direction: the kept ones, or `make()`'s. */
  compiled(p: PolicyIR, d: Direction, make: () => CompiledPolicy): CompiledPolicy {
    const key = this.policyKey(p, d);
    const hit = this.policies.get(key);
    if (hit) {
      hit.used = this.generation;
      this.stats.policiesReused++;
      return hit.compiled;
    }
    const compiled = make();
    this.policies.set(key, { compiled, used: this.generation });
    this.stats.policiesCompiled++;
    return compiled;
  }

  /**
   * The rules of a chain made from small inputs (an endpoint's chain: the policies that
   * select it and its addresses), given as `key`: the kept array when the key is the one it
   * was made from. A chain unchanged since the last render is then the same array, which the
   * render exchange and the dataplane's formatter find by identity instead of stringifying
   * or formatting hundreds of endpoint chains for every change.
   */
  chainRules(name: string, key: string, make: () => ChainSpec["rules"]): ChainSpec["rules"] {
    const hit = this.derived.get(name);
    if (hit && hit.key === key) {
      hit.used = this.generation;
      return hit.rules;
    }
    const rules = make();
    this.derived.set(name, { key, rules, used: this.generation });
    return rules;
  }

  /**
   * A policy's key per direction, kept per IR object: the same string each render (its hash
   * computed once), not a new concatenation of the policy's whole text for every policy of
   * every render.
   */
  private policyKey(p: PolicyIR, d: Direction): string {
    let keys = this.policyKeys.get(p);
    if (keys === undefined) {
      const fp = this.fingerprint(p);
      keys = { ingress: `ingress\u0000${fp}`, egress: `egress\u0000${fp}` };
      this.policyKeys.set(p, keys);
    }
    return keys[d];
  }

  /** Drops what the render just done did not use (a deleted policy, a set no rule names any more, a departed endpoint). */
  end(): void {
    for (const [k, e] of this.sets) if (e.used !== this.generation) this.sets.delete(k);
    for (const [k, e] of this.policies) if (e.used !== this.generation) this.policies.delete(k);
    for (const [k, e] of this.derived) if (e.used !== this.generation) this.derived.delete(k);
  }

  /** JSON text of an object, memoized by identity (objects kept from render to render are not stringified again). */
  private fingerprint(o: object): string {
    let fp = this.fingerprints.get(o);
    if (fp === undefined) {
      fp = JSON.stringify(o);
      this.fingerprints.set(o, fp);
    }
    return fp;
  }
}

/** Whether an endpoint (known labels) is among the pods a set source reads, as EndpointIndex decides it. */
function belongs(s: Extract<SetSource, { kind: "pods" | "ports" }>, ep: PodEndpoint, nsLabels: ReadonlyMap<string, Labels>): boolean {
  if (s.kind === "ports") {
    if (!ep.ports.some((p) => p.name === s.name && p.protocol === s.protocol)) return false;
    if (s.set === "all") return true;
  }
  const set = s.set as PodSet;
  const inNamespace = set.namespaces.kind === "name" ? ep.namespace === set.namespaces.name : requirementsMatch(requirementsOf(set.namespaces.selector), nsLabels.get(ep.namespace) ?? { [NAMESPACE_NAME_LABEL]: ep.namespace });
  return inNamespace && requirementsMatch(requirementsOf(set.pods), ep.labels);
}
