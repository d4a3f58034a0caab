/**
 * The agent: connectivity (flanneld's job) and policy (Felix's), wired the one-way DESIGN
 * way: subnet manager (lease, peers) and policy feed -> one scheduler -> pure route/rule
 * computation -> dataplane reconcilers. The parts:
 *
 * - runtime.ts: what is resolved once at start (config, datastore, network, underlay,
 *   VTEP MACs, lease, iptables mode and capabilities) and never changes;
 * - the managers, one per concern: routeManager.ts (devices, routes, the peers' trust),
 *   hostRules.ts (nat and filter tables), policyManager.ts (renders, conntrack of removed
 *   pods, ready marks), subnetEnvFile.ts;
 * - scheduler.ts: one clock and one serial queue for every kernel write (coalescing,
 *   periodic resyncs, retries with back-off), and dataplaneApply.ts: the ordering rules of
 *   one apply.
 *
 * Start-up, every change and the periodic resyncs all take the same path, and shutdown
 * leaves the dataplane in place so that a restart loses no traffic. It knows only a
 * SubnetManager and a PolicyFeed (datastores.ts picks etcd or Kubernetes), plus the files
 * it shares with sluice-cni on the node (localEndpoints.ts).
 */
import type { Server } from "node:http";
import type { Logger } from "pino";
import type { AgentConfig } from "../config/agentConfig.js";
import { forgetConntrackOf } from "../dataplane/conntrack.js";
import { formatCidr } from "../model/ip.js";
import type { Lease } from "../model/lease.js";
import { podMtu } from "../routing/backends.js";
import { type Concern, DataplaneApply, RulesNotApplied } from "./dataplaneApply.js";
import { startHealthServer } from "./health.js";
import { LocalEndpointWatcher, PolicyReadyMarks, PolicyStatusFile } from "./localEndpoints.js";
import { PolicyEngine } from "./policyEngine.js";
import { PolicyManager, type PolicyManagerOptions } from "./policyManager.js";
import { RouteManager } from "./routeManager.js";
import { type AgentRuntime, type Closers, resolveRuntime } from "./runtime.js";
import { ApplyScheduler } from "./scheduler.js";
import { SubnetEnvFile } from "./subnetEnvFile.js";

/** A burst of events (a kubectl apply of many objects, a relist) waits this long to become one apply. */
const POLICY_DEBOUNCE_MS = 5;
const PEERS_DEBOUNCE_MS = 50;
/** From the end of one apply to the start of the next, at least. */
const MIN_APPLY_INTERVAL_MS = 15;
/** After a failed apply: the first retry, doubled per failure in a row up to the maximum. */
const RETRY_BACKOFF = { initialMs: 250, maxMs: 10_000 };

export class ConnectivityAgent {
  private runtime: AgentRuntime | undefined;
  private readonly closers: Closers = [];
  private health: Server | undefined;
  private scheduler: ApplyScheduler<Concern> | undefined;
  private apply: DataplaneApply | undefined;
  private policy: PolicyEngine | undefined;
  private subnetEnv: SubnetEnvFile | undefined;
  private markedReady = false;
  private lastLoop = Date.now();
  private stopping = false;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
  ) {}

  /** Why the node is not ready yet; empty once the first full sync is done. */
  private notReadyReasons(): string[] {
    const reasons: string[] = [];
    if (!this.runtime?.subnets.healthy) reasons.push("no live subnet lease");
    if (!this.apply?.rulesInPlace) reasons.push("iptables rules not yet in place");
    if (this.policy && !this.policy.synced) reasons.push("policy data not yet listed from the datastore");
    if (!this.subnetEnv?.written) reasons.push("subnet.env not yet written");
    return reasons;
  }

  async start(): Promise<void> {
    const { cfg, log } = this;
    if (cfg["healthz-port"] > 0) {
      this.health = await startHealthServer(cfg["healthz-ip"], cfg["healthz-port"], {
        live: () => Date.now() - this.lastLoop < Math.max(60_000, 3 * cfg["route-resync"]),
        ready: () => {
          const reasons = this.notReadyReasons();
          return { ready: reasons.length === 0, reasons };
        },
      });
      log.info({ address: `${cfg["healthz-ip"]}:${cfg["healthz-port"]}` }, "health server listening");
    }

    const rt = await resolveRuntime(cfg, log, this.closers);
    this.runtime = rt;
    const { subnets, network, underlay } = rt;
    const local = new LocalEndpointWatcher({ dataDir: rt.paths.cniDataDir, nodeName: rt.nodeName, log });
    this.closers.push(() => local.stop());
    await local.start();
    // etcd mode: the node's pods reach etcd (and so every node's policy, this one's too) through the agent.
    const publisher = rt.datastore.endpointPublisher(local);
    publisher?.start();
    if (publisher) this.closers.push(() => publisher.stop());

    const scheduler = new ApplyScheduler<Concern>({
      // flannel's short resync keeps the nat rules (and, without policy, the forward rules)
      // true; the policy tables are larger, so their full check runs on its own period.
      // Every change applies at once, whatever the periods.
      resyncMs: { routes: cfg["route-resync"], nat: cfg["iptables-resync"], filter: rt.policyEnabled ? cfg["policy-resync"] : cfg["iptables-resync"] },
      minIntervalMs: MIN_APPLY_INTERVAL_MS,
      backoff: RETRY_BACKOFF,
      apply: (work) => {
        this.lastLoop = Date.now();
        return this.stopping ? Promise.resolve() : (this.apply as DataplaneApply).run(work);
      },
      onError: (err, retryInMs) => log.error({ err: err.message, retryInMs }, "dataplane update failed; will retry"),
    });
    this.scheduler = scheduler;

    let policySource: PolicyManagerOptions["policy"];
    if (rt.policyEnabled) {
      // Lists and watches the policy data; until the first list the filter table is left as it is.
      const feed = rt.datastore.policyFeed(local);
      this.closers.push(() => feed.stop());
      const engine = new PolicyEngine(feed, rt.nodeName, rt.hostRules.capabilities.sctpMatch, log);
      this.closers.push(() => engine.close());
      this.policy = engine;
      engine.on("changed", () => scheduler.request("filter", POLICY_DEBOUNCE_MS));
      feed.start().catch((err: Error) => {
        if (!this.stopping) log.error({ err: err.message }, "policy source stopped");
      });
      policySource = { engine, podAddresses: () => feed.snapshot().endpoints.flatMap((e) => e.ips) };
    }
    // Without policy, a pod is "policy ready" once it is wired: the marks follow the records.
    else local.on("changed", () => scheduler.request("filter", POLICY_DEBOUNCE_MS));

    this.subnetEnv = new SubnetEnvFile(rt, log);
    const marks = new PolicyReadyMarks(rt.paths.cniDataDir, log);
    this.apply = new DataplaneApply({
      log,
      network,
      lease: () => subnets.lease,
      // One MTU for both families: the tighter one when an IPv6 tunnel is in use.
      mtu: (lease: Lease) => podMtu(network.backend, underlay.mtu, lease.subnet6 !== undefined),
      routes: new RouteManager(rt),
      rules: rt.hostRules,
      policy: new PolicyManager({ families: rt.families, policy: policySource, localRecords: () => local.records(), marks, status: new PolicyStatusFile(rt.paths.cniDataDir, log), forgetConntrack: (a) => forgetConntrackOf(a, log) }),
      subnetEnv: this.subnetEnv,
      afterSubnetEnv: () => this.markReadyOnce(),
    });

    subnets.on("changed", (lease: Lease, old: Lease | undefined) => {
      log.warn({ from: old?.subnet && formatCidr(old.subnet), to: lease.subnet && formatCidr(lease.subnet) }, "subnet lease changed; reprogramming");
      for (const c of ["routes", "nat", "filter"] as const) scheduler.request(c);
    });
    subnets.on("peers", () => scheduler.request("routes", PEERS_DEBOUNCE_MS));
    await subnets.startPeerWatch();
    // The first apply (a resync of everything) goes through the same queue as every later
    // one. A route failure stops the start; rules that cannot be applied yet are retried.
    await scheduler.start().catch((err: unknown) => {
      if (!(err instanceof RulesNotApplied)) throw err;
    });
  }

  /** Tells the datastore once the first full sync is done (Kubernetes: NetworkUnavailable=False); retried on every apply until it succeeds. */
  private async markReadyOnce(): Promise<void> {
    if (this.markedReady || this.stopping || this.notReadyReasons().length > 0) return;
    try {
      await (this.runtime as AgentRuntime).subnets.markReady();
      this.markedReady = true;
      this.log.info("node ready: lease held, rules and policy in place, subnet.env written");
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "cannot mark the node ready; will retry");
    }
  }

  /** Stops the loops; leaves routes, rules and the lease in place so a restart loses nothing. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.scheduler?.stop();
    for (const close of this.closers.reverse()) await close();
    this.closers.length = 0;
    await new Promise<void>((r) => (this.health ? this.health.close(() => r()) : r()));
    this.log.info("stopped; dataplane left in place");
  }
}
