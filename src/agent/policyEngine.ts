/**
 * The policy half of the agent (Felix's job), wired the one-way DESIGN way: the policy
 * source (datastore list/watch) keeps a snapshot; on every change the engine marks its
 * render stale and asks the agent for an apply; the apply renders the snapshot (pure)
 * and hands chains and ipsets to the same serial dataplane queue as everything else.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { PolicySnapshot } from "../model/policySnapshot.js";
import type { Family } from "../model/ip.js";
import type { PolicyRender } from "../render/policyContract.js";
import { renderPolicyModel } from "../render/policy.js";
import { type PolicyModel, buildPolicyModel } from "../policy/model.js";

/** What the engine needs of a datastore: the etcd PolicySource or the Kubernetes KubePolicySource. */
export interface PolicyFeed {
  readonly synced: boolean;
  snapshot(): PolicySnapshot;
  on(event: "changed", listener: () => void): unknown;
  on(event: "synced", listener: () => void): unknown;
}

export class PolicyEngine extends EventEmitter {
  private cache: { snapshot: PolicySnapshot; families: string; renders: Map<Family, PolicyRender> } | undefined;
  /** Pod addresses as of the last render, to find those that went away. */
  private addresses: Set<string> | undefined;

  constructor(
    private readonly feed: PolicyFeed,
    private readonly nodeName: string,
    private readonly sctpSupported: boolean,
    private readonly log: Logger,
  ) {
    super();
    feed.on("changed", () => this.emit("changed"));
    feed.on("synced", () => {
      log.info("policy data synced; programming policy");
      this.emit("changed");
    });
  }

  get synced(): boolean {
    return this.feed.synced;
  }

  /**
   * Pod addresses that were in the previous call's snapshot and are gone from the current
   * one (their conntrack entries must go after the rules are applied).
   */
  takeRemovedAddresses(): string[] {
    if (!this.feed.synced) return [];
    const now = new Set(this.feed.snapshot().endpoints.flatMap((e) => e.ips));
    const before = this.addresses;
    this.addresses = now;
    return before ? [...before].filter((a) => !now.has(a)) : [];
  }

  private lastWarnings = new Set<string>();
  /** The snapshot of the last renders() call. */
  private rendered: PolicySnapshot | undefined;

  /**
   * This node's endpoints (host interface, addresses, and the container of the record they
   * came from; "" when none did) in the snapshot of the last renders() call: once the
   * caller has applied that render, their chains are in place.
   */
  renderedLocalEndpoints(): Array<{ hostIface: string; containerId: string; ips: string[] }> {
    const snapshot = this.rendered;
    if (!snapshot) return [];
    const containers = new Map(snapshot.workloadEndpoints.filter((r) => r.node === this.nodeName).map((r) => [r.hostIface, r.containerId]));
    return snapshot.endpoints.filter((e) => e.node === this.nodeName).map((e) => ({ hostIface: e.hostIface, containerId: containers.get(e.hostIface) ?? "", ips: e.ips }));
  }

  /** The policy model of a snapshot; new warnings are logged once. */
  private modelOf(snapshot: PolicySnapshot): PolicyModel {
    const model = buildPolicyModel(snapshot);
    const now = new Set(model.warnings);
    for (const w of now) if (!this.lastWarnings.has(w)) this.log.warn({ warning: w }, "policy warning");
    this.lastWarnings = now;
    return model;
  }

  /**
   * The render of each family, or undefined until the datastore has been listed once (the
   * caller then leaves the filter table as it is). Cached per snapshot: the source hands out
   * a new snapshot object whenever anything changed.
   */
  renders(families: readonly Family[]): ReadonlyMap<Family, PolicyRender> | undefined {
    if (!this.feed.synced) return undefined;
    const snapshot = this.feed.snapshot();
    const key = families.join(",");
    this.rendered = snapshot;
    if (this.cache && this.cache.snapshot === snapshot && this.cache.families === key) return this.cache.renders;
    const started = performance.now();
    const model = this.modelOf(snapshot);
    const renders = new Map<Family, PolicyRender>();
    for (const family of families) renders.set(family, renderPolicyModel({ family, nodeName: this.nodeName, model, sctpSupported: this.sctpSupported }));
    const local = snapshot.endpoints.filter((e) => e.node === this.nodeName).length;
    this.log.debug({ ms: Math.round(performance.now() - started), endpoints: snapshot.endpoints.length, local, policies: model.policies.length, revision: snapshot.revision }, "policy rendered");
    this.cache = { snapshot, families: key, renders };
    return renders;
  }
}
