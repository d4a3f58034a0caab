/**
 * The agent's ordering rules, with the real scheduler, apply, HostRules and PolicyManager on
 * a fake clock, and fake dataplanes, routes, policy engine and files (pure logic, no
 * kernel): what is written when, in which order, and whether it may trust the dataplane's
 * cache (a change) or must read the kernel (a resync).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { loadAgentConfig } from "../../src/config/agentConfig.js";
import { parseNetworkConfig } from "../../src/config/networkConfig.js";
import type { KernelReadOptions } from "../../src/dataplane/iptables.js";
import type { RulesApplyReport, RulesDataplane } from "../../src/dataplane/rulesDataplane.js";
import type { Family } from "../../src/model/ip.js";
import { parseCidr } from "../../src/model/ip.js";
import type { Lease } from "../../src/model/lease.js";
import type { PolicyRender } from "../../src/render/policyContract.js";
import type { Ruleset } from "../../src/render/ruleset.js";
import { type Concern, DataplaneApply } from "../../src/agent/dataplaneApply.js";
import { HostRules } from "../../src/agent/hostRules.js";
import { PolicyManager, type PolicyRenderer } from "../../src/agent/policyManager.js";
import type { RoutingOutcome } from "../../src/agent/routeManager.js";
import { ApplyScheduler } from "../../src/agent/scheduler.js";
import { FakeClock } from "../helpers/fakeClock.js";
import { captureLog } from "../helpers/log.js";

const RESYNC = { routes: 10_000, nat: 5_000, filter: 60_000 };

/** One thing the agent did, in order. */
type Event =
  | { what: "routes" }
  | { what: "rules"; family: Family; tables: string[]; trustCache: boolean | undefined; at: number }
  | { what: "conntrack"; addresses: string[] }
  | { what: "marks" }
  | { what: "status"; revision: string }
  | { what: "subnet.env" };

/** A RulesDataplane that records what it is asked to write, taking `applyMs` of fake time. */
class FakeDataplane implements RulesDataplane {
  writes = 0;
  active = 0;
  maxActive = 0;
  failures = 0;
  constructor(
    readonly family: Family,
    private readonly events: Event[],
    private readonly clock: FakeClock,
    private readonly applyMs: number,
  ) {}
  async applyTables(spec: Ruleset, opts?: KernelReadOptions): Promise<void> {
    await this.write(spec, opts);
  }
  async apply(family: Family, spec: Ruleset, _sets: unknown, opts?: KernelReadOptions): Promise<RulesApplyReport> {
    await this.write(spec, opts);
    return { family, wrote: true, failClosedFor: [], refusedSets: [], ms: 0 };
  }
  async removeAll(): Promise<void> {
    await Promise.resolve();
  }
  private async write(spec: Ruleset, opts: KernelReadOptions | undefined): Promise<void> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await this.clock.sleep(this.applyMs);
      if (this.failures > 0) {
        this.failures--;
        throw new Error("iptables-restore: line 3 failed");
      }
      this.writes++;
      this.events.push({ what: "rules", family: this.family, tables: spec.tables.map((t) => t.table), trustCache: opts?.trustCache, at: this.clock.now() });
    } finally {
      this.active--;
    }
  }
}

/** The policy engine's view: unsynced until the test lists the data; renders nothing but the shape. */
class FakeEngine implements PolicyRenderer {
  synced = false;
  addresses: string[] = [];
  revision = "1";
  private rendered: string | undefined;
  renders(families: readonly Family[]): Promise<ReadonlyMap<Family, PolicyRender> | undefined> {
    if (!this.synced) return Promise.resolve(undefined);
    this.rendered = this.revision;
    return Promise.resolve(new Map(families.map((f) => [f, emptyRender()])));
  }
  renderedRevision(): string | undefined {
    return this.rendered;
  }
  renderedLocalEndpoints(): Array<{ hostIface: string; containerId: string; ips: string[] }> {
    return [];
  }
}

function emptyRender(): PolicyRender {
  return { rawPreroutingRules: [], rawChains: [], forwardRules: [], inputRules: [], outputRules: [], chains: [], ipsets: [], localEndpoints: [] };
}

const lease: Lease = { subnet: parseCidr("10.244.7.0/24"), subnet6: undefined, attrs: { PublicIP: "192.0.2.7", BackendType: "vxlan", NodeName: "n7" }, publicIP: undefined, publicIPv6: undefined, leaseId: "1", expiration: undefined, modRevision: "1" };

function node(o: { policy: boolean; applyMs?: number }) {
  const clock = new FakeClock();
  const events: Event[] = [];
  const { log, messages } = captureLog("info");
  const cfg = loadAgentConfig(["--ip-masq", `--enable-policy=${o.policy}`], {}, "n7");
  const network = parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
  const dp = new FakeDataplane(4, events, clock, o.applyMs ?? 2);
  const hostRules = new HostRules(new Map([[4, dp]]), { sctpMatch: true, setMatch: true, sctpProtocol: true, notes: [] }, "nft", false, cfg);
  const engine = new FakeEngine();
  const state = { lease: lease as Lease | undefined, peersKey: "a" };
  const policy = new PolicyManager({
    families: [4],
    policy: o.policy ? { engine, podAddresses: () => engine.addresses } : undefined,
    localRecords: () => [],
    marks: { sync: () => Promise.resolve(void events.push({ what: "marks" })) },
    status: { write: (st) => Promise.resolve(void events.push({ what: "status", revision: st.revision })) },
    forgetConntrack: (addresses) => Promise.resolve(void events.push({ what: "conntrack", addresses: [...addresses] })),
  });
  const apply = new DataplaneApply({
    log,
    network,
    lease: () => state.lease,
    mtu: () => 1450,
    routes: {
      apply: (): Promise<RoutingOutcome> => {
        events.push({ what: "routes" });
        const trust = new Map([[4 as Family, { iface: "eth0", tunnel: undefined, peers: [] }]]);
        return Promise.resolve({ trust, trustKey: state.peersKey, kubeIpvs: undefined, kubeIpvsKey: "" });
      },
    },
    rules: hostRules,
    policy,
    subnetEnv: { write: () => Promise.resolve(void events.push({ what: "subnet.env" })) },
    afterSubnetEnv: () => Promise.resolve(),
  });
  const errors: number[] = [];
  const scheduler = new ApplyScheduler<Concern>({
    resyncMs: { ...RESYNC, filter: o.policy ? RESYNC.filter : RESYNC.nat },
    minIntervalMs: 15,
    backoff: { initialMs: 250, maxMs: 10_000 },
    clock,
    apply: (work) => apply.run(work),
    onError: (_e, ms) => errors.push(ms),
  });
  const start = async (): Promise<void> => {
    const first = scheduler.start();
    await clock.advance(50);
    await first;
  };
  const rules = (table?: string): Array<Extract<Event, { what: "rules" }>> => events.filter((e): e is Extract<Event, { what: "rules" }> => e.what === "rules" && (table === undefined || e.tables.includes(table)));
  const indexOf = (pred: (e: Event) => boolean): number => events.findIndex(pred);
  return { clock, events, messages, dp, engine, state, apply, scheduler, errors, start, rules, indexOf };
}

describe("agent apply order", () => {
  test("with policy on, nothing but nat until the policy data is listed; then the filter table, and only then subnet.env", async () => {
    const n = node({ policy: true });
    await n.start();
    assert.deepEqual(n.rules().map((e) => e.tables), [["nat"]], "start-up: nat only");
    // Peers change, the filter's resync falls due, policy events arrive: still not listed.
    n.state.peersKey = "b";
    n.scheduler.request("routes", 50);
    n.scheduler.request("filter", 15);
    await n.clock.advance(2 * RESYNC.filter);
    assert.equal(n.rules("filter").length, 0, "no filter-table change before the first complete list");
    assert.ok(n.rules("nat").length > 10, "the nat resync kept running");
    assert.equal(n.indexOf((e) => e.what === "subnet.env"), -1, "no subnet.env before policy is in place");
    assert.equal(n.apply.rulesInPlace, false);

    n.engine.synced = true;
    n.scheduler.request("filter", 15);
    await n.clock.advance(100);
    const filter = n.indexOf((e) => e.what === "rules" && e.tables.includes("filter"));
    const env = n.indexOf((e) => e.what === "subnet.env");
    assert.ok(filter >= 0 && env > filter, `subnet.env (${env}) after the filter table (${filter})`);
    assert.ok(n.messages().includes("host rules and policy in place"));
    assert.equal(n.apply.rulesInPlace, true);
  });

  test("without policy, the first apply writes nat and filter, then subnet.env", async () => {
    const n = node({ policy: false });
    await n.start();
    assert.deepEqual(
      n.events.map((e) => (e.what === "rules" ? `rules ${e.tables.join(",")}` : e.what)),
      ["routes", "rules nat,raw,filter", "marks", "subnet.env"],
    );
    assert.ok(n.messages().includes("host iptables rules in place"));
  });

  test("with policy on, a routes apply writes the filter table only when the peers' trust changed", async () => {
    const n = node({ policy: true });
    n.engine.synced = true;
    await n.start();
    const filters = (): number => n.rules("filter").length;
    assert.equal(filters(), 1);
    n.scheduler.request("routes", 50);
    await n.clock.advance(100);
    assert.equal(filters(), 1, "same peers: nat only");
    n.state.peersKey = "b";
    n.scheduler.request("routes", 50);
    await n.clock.advance(100);
    assert.equal(filters(), 2, "new peers: the filter table at once");
  });

  test("datastore lost: nothing is written, flushed or removed while there is no lease", async () => {
    const n = node({ policy: true });
    n.engine.synced = true;
    await n.start();
    const before = n.events.length;
    n.state.lease = undefined;
    n.scheduler.request("routes");
    n.scheduler.request("filter");
    await n.clock.advance(3 * RESYNC.filter);
    assert.deepEqual(n.events.slice(before), [], "no routes, rules, marks, conntrack or subnet.env while the lease is lost");
    n.state.lease = lease;
    await n.clock.advance(RESYNC.routes);
    assert.ok(n.events.slice(before).some((e) => e.what === "routes"), "back with the lease");
  });

  test("conntrack is cleared only for addresses whose removal the last successful filter apply programmed", async () => {
    const n = node({ policy: true, applyMs: 20 });
    n.engine.synced = true;
    n.engine.addresses = ["10.244.7.2", "10.244.7.3", "10.244.9.4"];
    await n.start();
    const conntrack = (): string[][] => n.events.flatMap((e) => (e.what === "conntrack" ? [e.addresses] : []));
    assert.deepEqual(conntrack(), [], "nothing removed at start");

    // .3 goes; the apply that removes it fails: its flows stay until a later apply succeeds.
    n.engine.addresses = ["10.244.7.2", "10.244.9.4"];
    n.dp.failures = 1;
    n.scheduler.request("filter", 15);
    await n.clock.advance(100);
    assert.deepEqual(conntrack(), [], "not after a failed apply");
    await n.clock.advance(1000);
    assert.deepEqual(conntrack(), [["10.244.7.3"]], "after the retry succeeded");
    const last = n.events.map((e) => e.what).lastIndexOf("conntrack");
    assert.equal(n.events[last - 1]?.what, "rules", "right after the rules that removed it");

    // .4 goes while an apply runs that was rendered with it: it is cleared after the next one.
    n.scheduler.request("filter");
    await n.clock.advance(16);
    n.engine.addresses = ["10.244.7.2"];
    n.scheduler.request("filter", 15);
    await n.clock.advance(10);
    assert.deepEqual(conntrack(), [["10.244.7.3"]], "the running apply still had .4");
    await n.clock.advance(200);
    assert.deepEqual(conntrack(), [["10.244.7.3"], ["10.244.9.4"]]);
  });

  test("the policy status names the revision of each filter apply that succeeded, after its marks; a failed apply leaves it as it was", async () => {
    const n = node({ policy: true });
    const statuses = (): string[] => n.events.flatMap((e) => (e.what === "status" ? [e.revision] : []));
    await n.start();
    assert.deepEqual(statuses(), [], "no status before the data was listed");
    n.engine.synced = true;
    n.engine.revision = "41";
    n.scheduler.request("filter", 15);
    await n.clock.advance(100);
    assert.deepEqual(statuses(), ["41"]);
    const at = n.indexOf((e) => e.what === "status");
    assert.equal(n.events[at - 1]?.what, "marks", "written after the ready marks, right after the rules");

    n.engine.revision = "42";
    n.dp.failures = 1;
    n.scheduler.request("filter", 15);
    await n.clock.advance(100);
    assert.deepEqual(statuses(), ["41"], "the failed apply of 42 is not in force");
    await n.clock.advance(1000);
    assert.deepEqual(statuses(), ["41", "42"], "the retry that succeeded is");
  });

  test("without policy there is no policy status", async () => {
    const n = node({ policy: false });
    await n.start();
    n.scheduler.request("filter", 15);
    await n.clock.advance(100);
    assert.equal(n.events.filter((e) => e.what === "status").length, 0);
  });

  test("a burst of 100 policy changes is a few filter applies, never two at once", async () => {
    const n = node({ policy: true, applyMs: 40 });
    n.engine.synced = true;
    await n.start();
    const before = n.rules("filter").length;
    for (let i = 0; i < 100; i++) {
      n.scheduler.request("filter", 15);
      await n.clock.advance(2);
    }
    await n.clock.advance(500);
    const applies = n.rules("filter").length - before;
    assert.ok(applies >= 1 && applies <= 8, `${applies} filter applies for 100 changes`);
    assert.equal(n.dp.maxActive, 1, "never concurrent");
  });

  test("changes may trust the dataplane's cache; start-up, the periodic resyncs and the retry after a failure read the kernel", async () => {
    const n = node({ policy: true });
    n.engine.synced = true;
    await n.start();
    const trust = (from: number): Array<string> => n.rules().slice(from).map((e) => `${e.tables.includes("filter") ? "filter" : "nat"}:${e.trustCache ? "cache" : "kernel"}`);
    assert.deepEqual(trust(0), ["filter:kernel"], "start-up is a resync");

    let from = n.rules().length;
    n.scheduler.request("filter", 15);
    await n.clock.advance(100);
    assert.deepEqual(trust(from), ["filter:cache"], "a policy change");

    from = n.rules().length;
    await n.clock.advance(RESYNC.nat);
    assert.deepEqual(trust(from), ["nat:kernel"], "the periodic nat resync");

    // A filter change still in its debounce when nat's resync starts joins that apply: nat
    // reads the kernel, the filter table still trusts the record, and goes first.
    from = n.rules().length;
    await n.clock.advance(2 * RESYNC.nat - 5 - n.clock.now());
    n.scheduler.request("filter", 15);
    await n.clock.advance(100);
    assert.deepEqual(trust(from), ["filter:cache", "nat:kernel"], "a nat resync joined by a filter change");

    from = n.rules().length;
    await n.clock.advance(RESYNC.filter - 2 * RESYNC.nat);
    assert.ok(trust(from).includes("filter:kernel"), `the periodic filter resync: ${trust(from).join(" ")}`);

    from = n.rules().length;
    n.dp.failures = 1;
    n.scheduler.request("filter", 15);
    await n.clock.advance(1000);
    assert.deepEqual(n.errors, [250], "one failure, retried after the back-off");
    assert.deepEqual(trust(from), ["filter:kernel"], "the retry is a resync");
  });
});
