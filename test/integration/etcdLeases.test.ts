import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseNetworkConfig, type NetworkConfig } from "../../src/config/networkConfig.js";
import { EtcdListWatch } from "../../src/datastore/etcdListWatch.js";
import { EtcdSubnetRegistry } from "../../src/datastore/etcdSubnetRegistry.js";
import { LeaseKeeper } from "../../src/ipam/leaseKeeper.js";
import { type Cidr, formatCidr, parseCidr, parseIp } from "../../src/model/ip.js";

const cidrText = (c: Cidr | undefined): string => (c ? formatCidr(c) : "none");
import type { LeaseAttrs } from "../../src/model/lease.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { captureLog } from "../helpers/log.js";

let etcd: TestEtcd;
before(async () => {
  etcd = await startTestEtcd();
});
after(async () => {
  await etcd.stop();
});

let prefixCounter = 0;
function setup(networkJson: object): { registry: EtcdSubnetRegistry; config: NetworkConfig; prefix: string; logs: ReturnType<typeof captureLog> } {
  const prefix = `/test-${process.pid}-${++prefixCounter}/network`;
  const logs = captureLog();
  return { registry: new EtcdSubnetRegistry(etcd.client, prefix, logs.log), config: parseNetworkConfig(networkJson), prefix, logs };
}

function keeper(s: ReturnType<typeof setup>, publicIP: string, o: { ttlMs?: number; renewMarginMs?: number; previous?: string; random?: () => number } = {}): LeaseKeeper {
  const attrs = (): LeaseAttrs => ({ PublicIP: publicIP, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: "0e:2a:00:00:00:01" }, NodeName: `n-${publicIP}` });
  return new LeaseKeeper({
    registry: s.registry,
    config: s.config,
    publicIP: parseIp(publicIP),
    publicIPv6: undefined,
    attrsFor: attrs,
    previous: o.previous ? { subnet: parseCidr(o.previous), subnet6: undefined } : undefined,
    ttlMs: o.ttlMs ?? 60_000,
    renewMarginMs: o.renewMarginMs ?? 10_000,
    log: s.logs.log,
    ...(o.random ? { random: o.random } : {}),
  });
}

/**
 * The allocator's `random` when a test must know which free subnet is tried first: the
 * shuffle then never moves a candidate, so free subnets are tried lowest first. A test that
 * relies on it first checks that it does steer the pick (see the malformed-keys test).
 */
const lowestFirst = (): number => 0.999999;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("subnet leases in a real etcd", () => {
  test("50 nodes allocating at once never share a subnet, even in a nearly full pool", async () => {
    // 10.10.0.0/18 with /24 subnets: 63 usable subnets for 50 nodes, so random picks collide often.
    const s = setup({ Network: "10.10.0.0/18", SubnetLen: 24 });
    const keepers = Array.from({ length: 50 }, (_, i) => keeper(s, `192.0.2.${i + 1}`));
    const leases = await Promise.all(keepers.map((k) => k.acquire()));
    keepers.forEach((k) => k.stop());
    const subnets = leases.map((l) => cidrText(l.subnet));
    assert.equal(new Set(subnets).size, 50, "every node got its own subnet");
    const { leases: stored } = await s.registry.listLeases();
    assert.equal(stored.length, 50);
    for (const l of stored) {
      const mine = leases.find((x) => x.attrs.PublicIP === l.attrs.PublicIP);
      assert.equal(cidrText(l.subnet), cidrText(mine?.subnet), `etcd agrees with ${l.attrs.PublicIP}`);
      assert.notEqual(cidrText(l.subnet), "10.10.0.0/24", "the first subnet is never handed out");
    }
  });

  test("the lease value is flannel's layout", async () => {
    const s = setup({ Network: "10.20.0.0/16" });
    const k = keeper(s, "192.0.2.7");
    const lease = await k.acquire();
    k.stop();
    const key = `${s.prefix}/subnets/${cidrText(lease.subnet).replace("/", "-")}`;
    const raw = await etcd.client.get(key).string();
    assert.deepEqual(JSON.parse(raw ?? "null"), { PublicIP: "192.0.2.7", PublicIPv6: null, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: "0e:2a:00:00:00:01" }, NodeName: "n-192.0.2.7" });
    const ttl = await etcd.client.leaseClient.leaseTimeToLive({ ID: lease.leaseId });
    assert.ok(Number(ttl.TTL) > 50 && Number(ttl.TTL) <= 60, `key is bound to an etcd lease with the TTL asked for (got ${ttl.TTL})`);
  });

  test("a lease is renewed before it expires and outlives its TTL", async () => {
    const s = setup({ Network: "10.21.0.0/16" });
    const k = keeper(s, "192.0.2.8", { ttlMs: 3000, renewMarginMs: 2000 });
    const lease = await k.acquire();
    await sleep(7000);
    const { leases } = await s.registry.listLeases();
    k.stop();
    assert.equal(leases.length, 1, "still leased after more than twice the TTL");
    assert.equal(cidrText(leases[0]?.subnet), cidrText(lease.subnet));
    assert.ok(s.logs.messages().filter((m) => m === "subnet lease renewed").length >= 2);
  });

  test("an expired lease frees its subnet for another node", async () => {
    const s = setup({ Network: "10.22.0.0/16" });
    const k = keeper(s, "192.0.2.9", { ttlMs: 2000, renewMarginMs: 1000 });
    const lease = await k.acquire();
    k.stop(); // the node dies: nobody renews
    await sleep(3500);
    assert.equal((await s.registry.listLeases()).leases.length, 0, "etcd dropped the key with its lease");
    const other = keeper(s, "192.0.2.10", { previous: cidrText(lease.subnet) });
    const got = await other.acquire();
    other.stop();
    assert.equal(cidrText(got.subnet), cidrText(lease.subnet), "the freed subnet can be taken");
  });

  test("a restarted node gets its subnet back: from its lease, or from subnet.env once the lease is gone", async () => {
    const s = setup({ Network: "10.23.0.0/16" });
    const first = keeper(s, "192.0.2.11");
    const a = await first.acquire();
    first.stop();
    const second = keeper(s, "192.0.2.11");
    const b = await second.acquire();
    second.stop();
    assert.equal(cidrText(b.subnet), cidrText(a.subnet));
    assert.ok(s.logs.records.some((r) => r["msg"] === "subnet lease acquired" && r["reason"] === "own-lease"));
    assert.equal((await s.registry.listLeases()).leases.length, 1, "the lease was taken over, not duplicated");

    await s.registry.deleteKey(s.registry.keyOf(b.subnet, undefined));
    const third = keeper(s, "192.0.2.11", { previous: cidrText(b.subnet) });
    const c = await third.acquire();
    third.stop();
    assert.equal(cidrText(c.subnet), cidrText(a.subnet));
    assert.ok(s.logs.records.some((r) => r["msg"] === "subnet lease acquired" && r["reason"] === "previous"));
  });

  test("after the network config changes, this node's old lease is deleted and a fitting one taken", async () => {
    const s = setup({ Network: "10.26.0.0/16" });
    const k1 = keeper(s, "192.0.2.80");
    const old = await k1.acquire();
    k1.stop();
    const s2 = { ...s, config: parseNetworkConfig({ Network: "10.27.0.0/16" }) };
    const k2 = keeper(s2, "192.0.2.80");
    const fresh = await k2.acquire();
    k2.stop();
    assert.match(cidrText(fresh.subnet), /^10\.27\./);
    const keys = (await s.registry.listLeases()).leases.map((l) => cidrText(l.subnet));
    assert.deepEqual(keys, [cidrText(fresh.subnet)], `only the new lease is left (old was ${cidrText(old.subnet)})`);
    assert.ok(s.logs.messages().includes("deleting this node's lease: it does not fit the current network config"));
  });

  test("a reservation is never taken by another node, and is used by its own node", async () => {
    // 10.30.0.0/22 with /24: three usable subnets (1, 2, 3); 10.30.2.0 is reserved.
    const s = setup({ Network: "10.30.0.0/22", SubnetLen: 24 });
    await s.registry.reserve(parseCidr("10.30.2.0/24"), undefined, { PublicIP: "192.0.2.50", BackendType: "" });
    const others = [keeper(s, "192.0.2.51"), keeper(s, "192.0.2.52")];
    const got = await Promise.all(others.map((k) => k.acquire()));
    assert.deepEqual(got.map((l) => cidrText(l.subnet)).sort(), ["10.30.1.0/24", "10.30.3.0/24"]);
    const third = keeper(s, "192.0.2.53");
    await assert.rejects(third.acquire(), /no free subnet left in 10\.30\.0\.0\/22/);
    const owner = keeper(s, "192.0.2.50");
    const mine = await owner.acquire();
    [...others, third, owner].forEach((k) => k.stop());
    assert.equal(cidrText(mine.subnet), "10.30.2.0/24");
    const stored = (await s.registry.listLeases()).leases.find((l) => l.attrs.PublicIP === "192.0.2.50");
    assert.equal(stored?.leaseId, "0", "it stays a reservation (no TTL)");
  });

  test("malformed lease values and keys are skipped with a warning, and their subnets are never handed out", async () => {
    // The free subnets are tried lowest first (lowestFirst), so the first two tries are the
    // subnets whose keys hold malformed values: the pick must go past both to 10.24.3.0/24.
    const control = setup({ Network: "10.24.0.0/16" });
    const first = keeper(control, "192.0.2.61", { random: lowestFirst });
    assert.equal(cidrText((await first.acquire()).subnet), "10.24.1.0/24", "with nothing taken the injected random picks the lowest free subnet");
    first.stop();

    const s = setup({ Network: "10.24.0.0/16" });
    await etcd.client.put(`${s.prefix}/subnets/10.24.1.0-24`).value("{not json");
    await etcd.client.put(`${s.prefix}/subnets/10.24.2.0-24`).value(JSON.stringify({ PublicIP: "not-an-ip" }));
    await etcd.client.put(`${s.prefix}/subnets/garbage`).value("{}");
    const k = keeper(s, "192.0.2.60", { random: lowestFirst });
    const lease = await k.acquire();
    k.stop();
    assert.equal(cidrText(lease.subnet), "10.24.3.0/24", "a key that exists is never double-booked, however unreadable its value");
    assert.equal((await etcd.client.get(`${s.prefix}/subnets/10.24.1.0-24`).string()), "{not json", "the malformed values are left as they were");
    assert.equal((await etcd.client.get(`${s.prefix}/subnets/10.24.2.0-24`).string()), JSON.stringify({ PublicIP: "not-an-ip" }));
    const warnings = s.logs.records.filter((r) => r["level"] === 40).map((r) => `${String(r["msg"])} ${String(r["key"])}`);
    assert.ok(warnings.some((w) => w.startsWith("skipping lease with a malformed value") && w.endsWith("10.24.1.0-24")));
    assert.ok(warnings.some((w) => w.startsWith("skipping lease with a malformed PublicIP") && w.endsWith("10.24.2.0-24")));
    assert.ok(warnings.some((w) => w.startsWith("skipping lease with a malformed key") && w.endsWith("/garbage")));
  });

  test("a revoked lease is noticed: a new lease is taken and the change is logged", async () => {
    const s = setup({ Network: "10.25.0.0/16" });
    const k = keeper(s, "192.0.2.70", { ttlMs: 30_000, renewMarginMs: 5000 });
    const first = await k.acquire();
    const watcher = new EtcdListWatch({
      client: etcd.client,
      prefix: s.registry.subnetsPrefix,
      log: s.logs.log,
      name: "lease",
      what: "subnet leases",
      handlers: { list: () => undefined, put: () => undefined, delete: (kv) => k.onKeyDeleted(s.registry.deleteEvent(kv, undefined).key) },
    });
    await watcher.start();
    const changed = new Promise<void>((resolve) => k.once("changed", () => resolve()));
    await etcd.client.leaseClient.leaseRevoke({ ID: first.leaseId });
    await changed;
    await watcher.stop();
    const { leases } = await s.registry.listLeases();
    k.stop();
    assert.equal(leases.length, 1, "the node holds a lease again");
    assert.notEqual(leases[0]?.leaseId, first.leaseId, "bound to a new etcd lease");
    assert.equal(cidrText(leases[0]?.subnet), cidrText(first.subnet), "the lost subnet is preferred, so running pods keep their addresses");
    assert.ok(s.logs.messages().includes("our subnet lease was revoked or expired; acquiring a new one"));
  });

  test("a replayed delete of an older incarnation of our key does not cost the current lease", async () => {
    const s = setup({ Network: "10.29.0.0/16" });
    const k = keeper(s, "192.0.2.71");
    const lease = await k.acquire();
    let changed = false;
    k.on("changed", () => (changed = true));
    k.onKeyDeleted(s.registry.keyOf(lease.subnet, undefined), "12345"); // not the lease we hold
    await sleep(500);
    const { leases } = await s.registry.listLeases();
    k.stop();
    assert.equal(changed, false);
    assert.equal(k.healthy, true);
    assert.deepEqual(leases.map((l) => l.leaseId), [lease.leaseId], "the current lease is untouched");
  });
});

describe("renewal while etcd does not answer", () => {
  let own: TestEtcd;
  before(async () => {
    own = await startTestEtcd();
  });
  after(async () => {
    process.kill(own.server.pid, "SIGCONT");
    await own.stop();
  });

  test("a failed renewal is retried and the lease survives a short etcd outage", async () => {
    const logs = captureLog();
    const registry = new EtcdSubnetRegistry(own.client, "/outage/network", logs.log);
    const k = new LeaseKeeper({
      registry,
      config: parseNetworkConfig({ Network: "10.28.0.0/16" }),
      publicIP: parseIp("192.0.2.90"),
      publicIPv6: undefined,
      attrsFor: () => ({ PublicIP: "192.0.2.90", BackendType: "host-gw" }),
      previous: undefined,
      ttlMs: 10_000,
      renewMarginMs: 8000, // first renewal 2 s in; each attempt gives up after 2 s
      log: logs.log,
    });
    const lease = await k.acquire();
    await sleep(1000);
    process.kill(own.server.pid, "SIGSTOP"); // etcd hangs: renewals time out
    await sleep(4500);
    process.kill(own.server.pid, "SIGCONT");
    await sleep(6000); // past the original expiry
    const { leases } = await registry.listLeases();
    k.stop();
    assert.ok(logs.messages().includes("subnet lease renewal failed; retrying"), "a renewal failed and was retried");
    assert.ok(logs.messages().includes("subnet lease renewed"), "a later renewal went through");
    assert.equal(leases.length, 1);
    assert.equal(cidrText(leases[0]?.subnet), cidrText(lease.subnet));
  });
});
