/**
 * EtcdListWatch against a real etcd: a paged list is one consistent listing; events after
 * it arrive in etcd's order, also through async handlers; a compacted watch revision and an
 * etcd restart both end in a relist whose state is etcd's; failed relists back off.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Etcd3, IKeyValue } from "etcd3";
import { connectEtcd } from "../../src/datastore/etcdClient.js";
import { EtcdListWatch, type EtcdListWatchOptions, listPaged } from "../../src/datastore/etcdListWatch.js";
import { etcdConnection, startEtcd, type EtcdServer } from "../../src/sandbox/etcdServer.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { captureLog } from "../helpers/log.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let counter = 0;
const uniquePrefix = (): string => `/lw-${process.pid}-${++counter}/`;

async function waitFor(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Writes `n` keys `<prefix>k00000`... in parallel batches. */
async function fill(client: Etcd3, prefix: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 200) await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, j) => client.put(`${prefix}k${String(i + j).padStart(5, "0")}`).value(`v${i + j}`)));
}

/** What etcd holds under `prefix` now, as key => value. */
async function contents(client: Etcd3, prefix: string): Promise<Map<string, string>> {
  const res = await client.getAll().prefix(prefix).exec();
  return new Map(res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
}

/** A consumer keeping key => value from the listings and events, as the real ones do. */
function mirror(extra: Partial<EtcdListWatchOptions["handlers"]> = {}): { state: Map<string, string>; lists: number[]; handlers: EtcdListWatchOptions["handlers"] } {
  const state = new Map<string, string>();
  const lists: number[] = [];
  return {
    state,
    lists,
    handlers: {
      list: async (kvs: IKeyValue[], revision: string) => {
        state.clear();
        for (const kv of kvs) state.set(kv.key.toString(), kv.value.toString());
        lists.push(Number(revision));
        await extra.list?.(kvs, revision);
      },
      put: async (kv: IKeyValue, prev: IKeyValue | undefined) => {
        state.set(kv.key.toString(), kv.value.toString());
        await extra.put?.(kv, prev);
      },
      delete: async (kv: IKeyValue, prev: IKeyValue | undefined) => {
        state.delete(kv.key.toString());
        await extra.delete?.(kv, prev);
      },
    },
  };
}

describe("EtcdListWatch", () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    await etcd.stop();
  });

  test("a prefix larger than a page is listed page by page, every key exactly once, as of one revision, while writes go on", async () => {
    const prefix = uniquePrefix();
    await fill(etcd.client, prefix, 2_550);
    await etcd.client.put(`${prefix.slice(0, -1)}-outside`).value("not under the prefix");
    // A writer adds keys that sort last and deletes early ones while the pages are read:
    // a page read at a later revision would show them.
    let listing: Awaited<ReturnType<typeof listPaged>> | undefined;
    let writes = 0;
    const writer = (async () => {
      while (!listing) {
        await etcd.client.put(`${prefix}z${String(writes).padStart(5, "0")}`).value("late");
        await etcd.client.delete().key(`${prefix}k${String(writes).padStart(5, "0")}`);
        writes++;
      }
    })();
    const reader = connectEtcd(etcd.connection());
    try {
      listing = await listPaged(reader, prefix, { pageSize: 100 });
    } finally {
      reader.close();
    }
    await writer;
    const keys = listing.kvs.map((kv) => kv.key.toString());
    assert.equal(listing.pages, 26, "2 550 keys in pages of 100 (+ one to learn there is no more)");
    assert.equal(new Set(keys).size, keys.length, "no key twice");
    const atRevision = await etcd.client.getAll().prefix(prefix).revision(listing.revision).keys();
    assert.deepEqual(keys, atRevision, "exactly the keys etcd held at the listing's revision, in key order");
    assert.ok(keys.every((k) => k.startsWith(prefix)), "nothing outside the prefix");
    assert.ok(writes > 0 && (await etcd.client.getAll().prefix(prefix).keys()).join() !== keys.join(), "the writer did change the prefix while the pages were read");
  });

  test("events after the list arrive in etcd's order, through handlers that take their time; writes made while the list is handled are not missed", async () => {
    const prefix = uniquePrefix();
    await fill(etcd.client, prefix, 5);
    const seen: string[] = [];
    let duringList = true;
    const m = mirror({
      // Written after the listing's revision, before the watch exists: the watch (from revision + 1) must bring them.
      list: async () => {
        if (!duringList) return;
        duringList = false;
        await etcd.client.put(`${prefix}during-list`).value("1");
        await etcd.client.delete().key(`${prefix}k00000`);
      },
      // Each handler finishes after a wait of its own: a later event handed over before an
      // earlier one's handler finished would be seen first.
      put: async (kv) => {
        await sleep(kv.value.length % 3);
        seen.push(`put ${kv.key.toString().slice(prefix.length)}=${kv.value.toString()}`);
      },
      delete: async (kv) => {
        await sleep(2);
        seen.push(`delete ${kv.key.toString().slice(prefix.length)}`);
      },
    });
    const lw = new EtcdListWatch({ client: etcd.client, prefix, log: captureLog().log, name: "test", what: "test keys", pageSize: 2, handlers: m.handlers });
    try {
      await lw.start();
      const expected = ["put during-list=1", "delete k00000"];
      const exists = new Set<string>();
      for (let i = 0; i < 60; i++) {
        const key = `e${i % 7}`;
        if (i % 5 === 4) {
          await etcd.client.delete().key(`${prefix}${key}`);
          // Deleting a key that is not there is no event.
          if (exists.delete(key)) expected.push(`delete ${key}`);
        } else {
          exists.add(key);
          await etcd.client.put(`${prefix}${key}`).value("x".repeat(i));
          expected.push(`put ${key}=${"x".repeat(i)}`);
        }
      }
      await waitFor("every event", () => seen.length >= expected.length).catch((err: Error) => {
        throw new Error(`${err.message}: saw ${JSON.stringify(seen)}`);
      });
      assert.deepEqual(seen, expected);
      assert.deepEqual(m.state, await contents(etcd.client, prefix));
      assert.equal(lw.listCount, 1, "no relist");
    } finally {
      await lw.stop();
    }
  });

  test("a watch whose revision was compacted relists, and the consumer ends with etcd's state", async () => {
    const prefix = uniquePrefix();
    await fill(etcd.client, prefix, 20);
    const logs = captureLog();
    let first = true;
    const m = mirror({
      // Between the first listing and its watch: change things, then compact past the
      // listing's revision, so the watch (from revision + 1) can only be cancelled.
      list: async () => {
        if (!first) return;
        first = false;
        await etcd.client.delete().key(`${prefix}k00003`);
        await etcd.client.put(`${prefix}k00004`).value("changed");
        const r = await etcd.client.put(`${prefix}new`).value("1");
        await etcd.client.kv.compact({ revision: r.header.revision, physical: true });
      },
    });
    const lw = new EtcdListWatch({ client: etcd.client, prefix, log: logs.log, name: "test", what: "test keys", pageSize: 7, initialBackoffMs: 50, handlers: m.handlers });
    try {
      await lw.start();
      await waitFor("the relist", () => lw.listCount >= 2 && lw.live);
      // etcd3 reports the cancellation without its reason (the response's compact_revision).
      assert.ok(logs.records.some((r) => r["msg"] === "test watch failed; relisting (keeping the current snapshot)" && /Watcher canceled/.test(String(r["err"]))), "etcd cancelled the watch");
      assert.deepEqual(m.state, await contents(etcd.client, prefix));
      assert.equal(m.state.get(`${prefix}k00004`), "changed");
      assert.equal(m.state.has(`${prefix}k00003`), false);
      // And the new watch works.
      await etcd.client.put(`${prefix}after`).value("2");
      await waitFor("an event on the new watch", () => m.state.get(`${prefix}after`) === "2");
    } finally {
      await lw.stop();
    }
  });

  test("a handler that throws is logged; the events after it still arrive", async () => {
    const prefix = uniquePrefix();
    const logs = captureLog();
    const m = mirror({
      put: (kv) => {
        if (kv.value.toString() === "boom") throw new Error("consumer bug");
      },
    });
    const lw = new EtcdListWatch({ client: etcd.client, prefix, log: logs.log, name: "test", what: "test keys", handlers: m.handlers });
    try {
      await lw.start();
      await etcd.client.put(`${prefix}a`).value("boom");
      await etcd.client.put(`${prefix}b`).value("fine");
      await waitFor("the event after the failing one", () => m.state.get(`${prefix}b`) === "fine");
      assert.ok(logs.records.some((r) => r["msg"] === "applying a test change failed" && r["err"] === "consumer bug"));
      assert.equal(lw.listCount, 1);
    } finally {
      await lw.stop();
    }
  });

  test("start() keeps trying with back-off until etcd answers, and stop() ends a watch that never listed", async () => {
    const logs = captureLog();
    const client = connectEtcd({ endpoints: ["http://127.0.0.1:1"], dialTimeoutMs: 200 });
    const lw = new EtcdListWatch({ client, prefix: uniquePrefix(), log: logs.log, name: "test", what: "test keys", initialBackoffMs: 20, maxBackoffMs: 80, requestTimeoutMs: 300, handlers: mirror().handlers });
    const started = lw.start();
    const retries = () => logs.records.filter((r) => r["msg"] === "cannot list the test keys yet").map((r) => r["retryInMs"]);
    await waitFor("five failed lists", () => retries().length >= 5);
    await lw.stop();
    await assert.rejects(started, /stopped before its first list/);
    assert.deepEqual(retries().slice(0, 5), [20, 40, 80, 80, 80], "the delay doubles per failure, up to the maximum");
    client.close();
  });
});

describe("EtcdListWatch through an etcd restart", () => {
  let etcd: TestEtcd;
  let restarted: EtcdServer | undefined;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    await restarted?.stop();
    await etcd.stop();
  });

  test("a lost watch keeps the consumer's state through the outage, backs off between failed relists, and relists what changed meanwhile", async () => {
    const prefix = uniquePrefix();
    await fill(etcd.client, prefix, 30);
    const client = connectEtcd(etcd.connection());
    const logs = captureLog();
    const m = mirror();
    const lw = new EtcdListWatch({ client, prefix, log: logs.log, name: "test", what: "test keys", pageSize: 8, initialBackoffMs: 100, maxBackoffMs: 400, requestTimeoutMs: 1000, handlers: m.handlers });
    const relistDelays = () => logs.records.filter((r) => r["msg"] === "test relist failed; keeping the last good snapshot").map((r) => r["retryInMs"]);
    try {
      await lw.start();
      await waitFor("live", () => lw.live);
      const before = new Map(m.state);

      await etcd.server.stop();
      await waitFor("watch loss noticed", () => !lw.live);
      await waitFor("four failed relists", () => relistDelays().length >= 4);
      assert.deepEqual(relistDelays().slice(0, 4), [100, 200, 400, 400], "back-off doubles between failed relists, up to the maximum");
      assert.deepEqual(m.state, before, "the consumer's state is untouched while etcd is away");
      assert.equal(lw.listCount, 1);

      // Change things while the watch cannot reach etcd: etcd comes back on its unix socket
      // only (the watch uses TCP), takes the writes, then returns on TCP as well.
      const socketOnly = await startEtcd({ dir: etcd.server.dir });
      const writer = connectEtcd(etcdConnection(socketOnly));
      await writer.delete().key(`${prefix}k00001`);
      await writer.put(`${prefix}k00002`).value("changed");
      await writer.put(`${prefix}meanwhile`).value("1");
      const expected = await contents(writer, prefix);
      writer.close();
      await socketOnly.stop();
      restarted = await startEtcd({ dir: etcd.server.dir, tcpPort: Number(new URL(etcd.server.endpoint).port) });

      await waitFor("relisted and live", () => lw.listCount >= 2 && lw.live, 30_000);
      assert.deepEqual(m.state, expected, "the relist brought what changed meanwhile");
    } finally {
      await lw.stop();
      client.close();
    }
  });
});
