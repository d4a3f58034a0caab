/**
 * The policy concern: what the filter table gets from the policy engine (a render per
 * family, or "not yet": the datastore was not listed once), and what follows a filter
 * apply that succeeded: the conntrack entries of pod addresses whose removal that apply
 * programmed are forgotten, and the pods' policy-ready marks follow what was programmed.
 * With policy off, the marks follow the plugin's records (a wired pod is ready).
 */
import type { Family } from "../model/ip.js";
import type { TableChoice } from "../render/hostRules.js";
import type { PolicyRender } from "../render/policyContract.js";
import type { PolicyInput } from "./hostRules.js";
import type { ProgrammedEndpoint } from "./localEndpoints.js";
import type { WorkloadEndpointRecord } from "../model/endpoint.js";
import type { PolicyStatus } from "../model/localEndpoints.js";

/** What the manager needs of the PolicyEngine (and tests fake). */
export interface PolicyRenderer {
  readonly synced: boolean;
  renders(families: readonly Family[]): Promise<ReadonlyMap<Family, PolicyRender> | undefined>;
  renderedLocalEndpoints(): ProgrammedEndpoint[];
  /** The datastore revision of the snapshot of the last renders() call. */
  renderedRevision(): string | undefined;
}

export interface PolicyManagerOptions {
  families: readonly Family[];
  /**
   * The policy engine, and the pod addresses (every node's) of the snapshot it renders next;
   * undefined with --enable-policy=false.
   */
  policy: { engine: PolicyRenderer; podAddresses: () => readonly string[] } | undefined;
  /** The plugin's pod records (the marks' source without policy). */
  localRecords: () => readonly WorkloadEndpointRecord[];
  marks: { sync(programmed: readonly ProgrammedEndpoint[]): Promise<void> };
  /** Where the revision in force is recorded after each filter apply with policy (policy-status.json). */
  status: { write(s: PolicyStatus): Promise<void> };
  forgetConntrack: (addresses: readonly string[]) => Promise<unknown>;
}

export class PolicyManager {
  /** Pod addresses in the snapshot of the last filter apply that succeeded. */
  private programmed: Set<string> | undefined;
  /** Pod addresses in the snapshot the pending apply renders. */
  private rendering: Set<string> | undefined;

  constructor(private readonly o: PolicyManagerOptions) {}

  get enabled(): boolean {
    return this.o.policy !== undefined;
  }

  /** The datastore's policy data has been listed once (always true without policy). */
  get synced(): boolean {
    return this.o.policy?.engine.synced ?? true;
  }

  /** The policy part of an apply of `tables`; a nat-only apply needs no render (and must not wait for a failing one). */
  async input(tables: readonly TableChoice[], kubeIpvs: readonly string[] | undefined): Promise<PolicyInput> {
    const p = this.o.policy;
    this.rendering = undefined;
    if (!p) return { enabled: false };
    if (!tables.includes("filter")) return { enabled: true, renders: undefined };
    // Read before renders() so that it is the snapshot renders() takes (it reads it first, synchronously).
    const addresses = p.engine.synced ? new Set(p.podAddresses()) : undefined;
    const renders = await p.engine.renders(this.o.families);
    if (renders) this.rendering = addresses;
    return { enabled: true, renders, kubeIpvs: kubeIpvs && { services: kubeIpvs } };
  }

  /** After the filter table was applied: forget the removed addresses' flows, then write the ready marks. */
  async filterApplied(): Promise<void> {
    const p = this.o.policy;
    if (!p) return this.o.marks.sync(this.o.localRecords());
    const now = this.rendering;
    this.rendering = undefined;
    if (now) {
      const before = this.programmed;
      this.programmed = now;
      if (before) {
        const removed = [...before].filter((a) => !now.has(a));
        if (removed.length > 0) await this.o.forgetConntrack(removed);
      }
    }
    const endpoints = p.engine.renderedLocalEndpoints();
    await this.o.marks.sync(endpoints);
    const revision = now ? p.engine.renderedRevision() : undefined;
    if (revision !== undefined) await this.o.status.write({ revision, appliedAt: new Date().toISOString(), localEndpoints: endpoints.length });
  }
}
