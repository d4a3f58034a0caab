/**
 * One apply of the node's dataplane, as the scheduler hands it out (src/agent/scheduler.ts),
 * with the ordering rules in one place:
 *
 * - No lease (not yet, or lost with the datastore): nothing is touched. What is programmed
 *   stays as it is: no flush, no removal.
 * - Routes first: they say which peers the filter table's underlay rules trust.
 * - The nat table follows the routes and its own resync. The filter table follows the
 *   policy, its own resync, and (with policy on) a change of the peers' trust or of
 *   kube-ipvs0; without policy it goes with every routes apply. HostRules leaves it as it is
 *   until the policy data was listed once and the peers are known.
 * - After a filter apply that succeeded: conntrack of the removed pod addresses, ready marks.
 * - subnet.env (which the CNI plugin needs to wire a pod) is written only once the policy
 *   chains are in place, so that on a fresh node no pod can start unpoliced.
 *
 * A change-driven apply may trust the dataplane's cache of what it last wrote; a resync
 * (start-up, periodic, retry) reads the kernel, per table: a nat resync joined by a filter
 * change reads nat only (readPasses).
 */
import type { Logger } from "pino";
import type { NetworkConfig } from "../config/networkConfig.js";
import type { Lease } from "../model/lease.js";
import type { TableChoice } from "../render/hostRules.js";
import type { HostRules } from "./hostRules.js";
import type { PolicyManager } from "./policyManager.js";
import type { RoutingOutcome } from "./routeManager.js";
import type { ApplyWork } from "./scheduler.js";

/** What the scheduler schedules: each has its own resync period. */
export type Concern = "routes" | "nat" | "filter";

/** The host rules could not be applied (routes and subnet.env were done): the agent keeps running and retries. */
export class RulesNotApplied extends Error {}

export interface DataplaneApplyDeps {
  log: Logger;
  network: NetworkConfig;
  /** This node's current lease; undefined before acquisition and while it is lost. */
  lease: () => Lease | undefined;
  mtu: (lease: Lease) => number;
  routes: { apply(lease: Lease, mtu: number): Promise<RoutingOutcome> };
  rules: Pick<HostRules, "apply">;
  policy: Pick<PolicyManager, "enabled" | "input" | "filterApplied">;
  subnetEnv: { write(lease: Lease, mtu: number): Promise<void> };
  /** Called after subnet.env is in place (the agent marks the node ready once). */
  afterSubnetEnv: () => Promise<void>;
}

export class DataplaneApply {
  /** The filter table was applied once (with policy: with a render of the listed data). */
  rulesInPlace = false;
  private routing: RoutingOutcome | undefined;
  /** The routing keys the last applied filter table was rendered with. */
  private appliedTrust = "";
  private appliedKubeIpvs = "";

  constructor(private readonly d: DataplaneApplyDeps) {}

  async run(work: ApplyWork<Concern>): Promise<void> {
    const { d } = this;
    const lease = d.lease();
    if (!lease) return;
    const mtu = d.mtu(lease);
    const routes = work.get("routes");
    if (routes) this.routing = await d.routes.apply(lease, mtu);
    const routing = this.routing;
    const kinds = new Map<TableChoice, string | undefined>();
    if (routes || work.has("nat")) kinds.set("nat", work.get("nat") ?? routes);
    // With policy on, checking the filter table on every route resync would cost a full
    // iptables-save + ipset list; the peers' trust and the IPVS path live there too, so a
    // change of either applies it at once.
    const routingChanged = routing !== undefined && (routing.trustKey !== this.appliedTrust || routing.kubeIpvsKey !== this.appliedKubeIpvs);
    if (work.has("filter") || (routes && (!d.policy.enabled || routingChanged))) kinds.set("filter", work.get("filter") ?? routes);
    const tables = [...kinds.keys()];

    let failure: Error | undefined;
    try {
      const input = await d.policy.input(tables, routing?.kubeIpvs);
      let filterApplied = false;
      for (const pass of readPasses(kinds)) {
        const r = await d.rules.apply(d.network, lease, input, pass.tables, routing?.trust, { resync: pass.resync });
        filterApplied ||= r.filterApplied;
      }
      if (filterApplied) {
        this.appliedTrust = routing?.trustKey ?? "";
        this.appliedKubeIpvs = routing?.kubeIpvsKey ?? "";
        await d.policy.filterApplied();
        if (!this.rulesInPlace) {
          d.log.info(d.policy.enabled ? "host rules and policy in place" : "host iptables rules in place");
          this.rulesInPlace = true;
        }
      }
    } catch (err) {
      failure = err as Error;
      d.log.error({ err: failure.message }, "cannot apply iptables rules; will retry");
    }
    if (!d.policy.enabled || this.rulesInPlace) {
      await d.subnetEnv.write(lease, mtu);
      await d.afterSubnetEnv();
    }
    if (failure) throw new RulesNotApplied(failure.message);
  }
}

/**
 * The tables of one apply grouped by whether they read the kernel: a table reads only when
 * its own concern is a resync. nat's 5 s resync that joins a filter change must not make
 * the filter table read back its megabytes (a second and more at 5,000 pods) for a change
 * that may trust the record. Changes go first; one pass when all agree.
 */
export function readPasses(kinds: ReadonlyMap<TableChoice, string | undefined>): Array<{ tables: TableChoice[]; resync: boolean }> {
  const change: TableChoice[] = [];
  const resync: TableChoice[] = [];
  for (const [table, kind] of kinds) (kind === "resync" ? resync : change).push(table);
  const passes: Array<{ tables: TableChoice[]; resync: boolean }> = [];
  if (change.length) passes.push({ tables: change, resync: false });
  if (resync.length) passes.push({ tables: resync, resync: true });
  return passes;
}
