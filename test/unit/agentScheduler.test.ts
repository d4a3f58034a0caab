/**
 * The agent's scheduler on a fake clock: coalescing, the minimum interval, applies never
 * concurrent, per-concern periodic resyncs, retries with exponential back-off whose
 * success is a resync, and stop.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ApplyScheduler, type ApplyKind, type ApplyWork } from "../../src/agent/scheduler.js";
import { FakeClock } from "../helpers/fakeClock.js";

type C = "routes" | "nat" | "filter";

interface Harness {
  clock: FakeClock;
  scheduler: ApplyScheduler<C>;
  /** Every apply: when it started and ended, and its work. */
  applies: Array<{ at: number; end: number | undefined; work: Record<string, ApplyKind> }>;
  errors: number[];
  maxConcurrent: () => number;
  fail: { next: number };
}

function harness(o: { applyMs?: number; resyncMs?: Partial<Record<C, number>> } = {}): Harness {
  const clock = new FakeClock();
  const applies: Harness["applies"] = [];
  const errors: number[] = [];
  const fail = { next: 0 };
  let running = 0;
  let max = 0;
  const scheduler = new ApplyScheduler<C>({
    resyncMs: { routes: 10_000, nat: 5_000, filter: 60_000, ...o.resyncMs },
    minIntervalMs: 15,
    backoff: { initialMs: 250, maxMs: 4_000 },
    clock,
    apply: async (work: ApplyWork<C>) => {
      const rec: Harness["applies"][number] = { at: clock.now(), end: undefined, work: Object.fromEntries(work) };
      applies.push(rec);
      running++;
      max = Math.max(max, running);
      try {
        await clock.sleep(o.applyMs ?? 5);
        if (fail.next > 0) {
          fail.next--;
          throw new Error("kernel said no");
        }
      } finally {
        running--;
        rec.end = clock.now();
      }
    },
    onError: (_err, retryInMs) => errors.push(retryInMs),
  });
  return { clock, scheduler, applies, errors, maxConcurrent: () => max, fail };
}

/** Starts the scheduler on the fake clock (the first apply takes fake time too). */
async function started(h: Harness): Promise<void> {
  const first = h.scheduler.start();
  await h.clock.advance(100);
  await first;
}

describe("agent scheduler", () => {
  test("start-up is one apply: a resync of every concern", async () => {
    const h = harness();
    await started(h);
    assert.deepEqual(h.applies.map((a) => a.work), [{ routes: "resync", nat: "resync", filter: "resync" }]);
  });

  test("a burst of 200 changes becomes a few applies, never two at once, and the last change is applied", async () => {
    const h = harness({ applyMs: 30 });
    await started(h);
    const before = h.applies.length;
    let lastRequest = 0;
    for (let i = 0; i < 200; i++) {
      h.scheduler.request(i % 2 ? "filter" : "routes", 15);
      lastRequest = h.clock.now();
      await h.clock.advance(1);
    }
    await h.clock.advance(1000);
    const burst = h.applies.slice(before);
    assert.ok(burst.length >= 1 && burst.length <= 10, `${burst.length} applies for 200 changes`);
    assert.equal(h.maxConcurrent(), 1, "applies never overlap");
    const last = burst.at(-1);
    assert.ok(last && last.at >= lastRequest, "an apply started after the last change");
    assert.deepEqual(last?.work, { routes: "change", filter: "change" });
  });

  test("a change waits its debounce, and at least the minimum interval after the previous apply ended", async () => {
    const h = harness({ applyMs: 5 });
    await started(h);
    const t0 = h.clock.now();
    h.scheduler.request("filter", 15);
    await h.clock.advance(14);
    assert.equal(h.applies.length, 1, "not before its debounce");
    await h.clock.advance(1);
    assert.equal(h.applies.length, 2);
    assert.equal(h.applies[1]?.at, t0 + 15);
    await h.clock.advance(6);
    const ended = h.applies[1]?.end ?? Infinity;
    h.scheduler.request("nat");
    await h.clock.advance(100);
    assert.equal(h.applies[2]?.at, ended + 15, "the minimum interval after the previous apply");
    assert.deepEqual(h.applies[2]?.work, { nat: "change" });
  });

  test("each concern's full resync runs at its interval, as a resync; changes do not postpone it", async () => {
    const h = harness({ applyMs: 1, resyncMs: { routes: 1_000, nat: 400, filter: 3_000 } });
    const first = h.scheduler.start();
    await h.clock.advance(1);
    await first;
    for (let t = 0; t < 3_000; t += 100) {
      h.scheduler.request("filter");
      await h.clock.advance(100);
    }
    const resyncsOf = (c: C): number[] => h.applies.filter((a) => a.work[c] === "resync").map((a) => a.at);
    assert.deepEqual(resyncsOf("nat"), [0, 400, 800, 1200, 1600, 2000, 2400, 2800]);
    assert.deepEqual(resyncsOf("routes"), [0, 1000, 2000, 3000]);
    assert.deepEqual(resyncsOf("filter"), [0, 3000]);
    assert.ok(h.applies.some((a) => a.work["filter"] === "change"), "the changes applied as changes");
  });

  test("a change due with a periodic resync is applied first, alone; the resync is the next apply, even while changes keep coming", async () => {
    const h = harness({ applyMs: 50, resyncMs: { filter: 1_000 } });
    await started(h); // the start-up resync ran at 0
    await h.clock.advance(890);
    h.scheduler.request("filter", 10); // both fall due at 1000, with filter's resync
    h.scheduler.request("routes", 10);
    await h.clock.advance(10);
    assert.equal(h.applies.at(-1)?.at, 1_000);
    assert.deepEqual(h.applies.at(-1)?.work, { filter: "change", routes: "change" }, "the changes, without the resync that fell due with them");
    h.scheduler.request("filter"); // arrives while the change applies: joins the resync, does not postpone it again
    await h.clock.advance(400);
    assert.deepEqual(h.applies.at(-1)?.work, { filter: "resync" }, "the resync as the next apply");
    assert.equal(h.applies.at(-1)?.at, (h.applies.at(-2)?.end ?? 0) + 15);
  });

  test("a failed apply is retried with exponential back-off; the retry is a resync, and a success resets the back-off", async () => {
    const h = harness({ applyMs: 1 });
    await started(h);
    h.fail.next = 3;
    h.scheduler.request("filter");
    await h.clock.advance(10_000);
    const after = h.applies.slice(1, 5);
    assert.deepEqual(after.map((a) => a.work), [{ filter: "change" }, { filter: "resync" }, { filter: "resync" }, { filter: "resync" }]);
    assert.deepEqual(h.errors, [250, 500, 1000]);
    const gaps = after.slice(1).map((a, i) => a.at - (after[i]?.end ?? 0));
    assert.deepEqual(gaps, [250, 500, 1000]);
    // The next failure starts from the first step again.
    h.fail.next = 1;
    h.scheduler.request("nat");
    await h.clock.advance(5_000);
    assert.deepEqual(h.errors, [250, 500, 1000, 250]);
  });

  test("the first apply's failure rejects start(), and its retry is already scheduled", async () => {
    const h = harness({ applyMs: 1 });
    h.fail.next = 1;
    const first = assert.rejects(h.scheduler.start(), /kernel said no/);
    await h.clock.advance(1);
    await first;
    await h.clock.advance(300);
    assert.deepEqual(h.applies.map((a) => a.work), [
      { routes: "resync", nat: "resync", filter: "resync" },
      { routes: "resync", nat: "resync", filter: "resync" },
    ]);
  });

  test("stop waits for the running apply; nothing runs after it", async () => {
    const h = harness({ applyMs: 50 });
    await started(h);
    h.scheduler.request("routes");
    await h.clock.advance(1);
    assert.equal(h.applies.length, 2);
    let stopped = false;
    const stopping = h.scheduler.stop().then(() => (stopped = true));
    h.scheduler.request("filter");
    await h.clock.advance(10);
    assert.equal(stopped, false, "still waiting for the apply");
    await h.clock.advance(100_000);
    await stopping;
    assert.equal(h.applies.length, 2);
  });
});
