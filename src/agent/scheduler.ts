/**
 * The agent's one clock and one serial queue for every kernel write. Concerns (routes, the
 * nat table, the filter table) ask for an apply when something they follow changed; the
 * scheduler coalesces those requests (a debounce per request, and a minimum interval
 * between applies), adds each concern's periodic full resync when it falls due, and after
 * a failed apply retries with exponential back-off. Applies never overlap: a request that
 * arrives during one joins the next.
 *
 * A change that falls due together with a periodic resync is applied first, alone, and the
 * resync follows as the next apply: a change never waits behind a full read of the kernel
 * it did not need (the resync yields once, so a stream of changes cannot starve it).
 *
 * Each apply is told, per concern, whether it follows a change or is a resync (start-up,
 * the periodic resync, the retry after a failure): a change may trust what the dataplane
 * last wrote, a resync reads the kernel again.
 */

/** Injectable so that tests run the schedule on a fake clock. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export type ApplyKind = "change" | "resync";

/** What one apply covers: each concern in it, and why it is applied. */
export type ApplyWork<C extends string> = ReadonlyMap<C, ApplyKind>;

export interface SchedulerOptions<C extends string> {
  /** Per concern, the longest time between two of its full resyncs. */
  resyncMs: Readonly<Record<C, number>>;
  /** The shortest time from the end of one apply to the start of the next (coalesces bursts). */
  minIntervalMs: number;
  /** Wait after the first failure in a row; doubled per further failure up to maxMs. */
  backoff: { initialMs: number; maxMs: number };
  /** Does the work; a rejection schedules a retry (as a resync of the same concerns). */
  apply: (work: ApplyWork<C>) => Promise<void>;
  onError: (err: Error, retryInMs: number) => void;
  clock?: Clock;
}

export class ApplyScheduler<C extends string> {
  private readonly clock: Clock;
  private readonly concerns: readonly C[];
  /** Concerns waiting for an apply: why, and from when on (a change's debounce). */
  private readonly pending = new Map<C, { kind: ApplyKind; dueAt: number }>();
  private readonly lastResync = new Map<C, number>();
  /** Concerns whose due periodic resync has let a change go first (it does so once). */
  private readonly yielded = new Set<C>();
  private running: Promise<void> | undefined;
  private timer: unknown;
  /** No apply starts before this: the minimum interval, or the back-off after a failure. */
  private notBefore = 0;
  private failures = 0;
  private started = false;
  private stopped = false;
  /** Applies done, failed ones included (for tests and logs). */
  applies = 0;

  constructor(private readonly o: SchedulerOptions<C>) {
    this.clock = o.clock ?? systemClock;
    this.concerns = Object.keys(o.resyncMs) as C[];
  }

  /**
   * Runs the first apply (a resync of every concern) at once and starts the clock. Resolves
   * or rejects with that apply; after a failure the retry is already scheduled.
   */
  start(): Promise<void> {
    this.started = true;
    const work = new Map(this.concerns.map((c) => [c, "resync" as const]));
    return this.run(work, true);
  }

  /** Something `concern` follows changed: apply it within `delayMs` (or as soon as the queue allows). */
  request(concern: C, delayMs = 0): void {
    if (this.stopped) return;
    const dueAt = this.clock.now() + delayMs;
    const had = this.pending.get(concern);
    // A pending resync stays a resync; a second change keeps the first one's (earlier) time.
    if (!had) this.pending.set(concern, { kind: "change", dueAt });
    else if (dueAt < had.dueAt) had.dueAt = dueAt;
    this.arm();
  }

  /** Stops the clock and waits for a running apply; nothing is applied after it resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Resolves when no apply is running (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** When the next apply should start: the earliest due request or resync, not before notBefore. */
  private nextDue(): number | undefined {
    let next: number | undefined;
    for (const p of this.pending.values()) next = next === undefined ? p.dueAt : Math.min(next, p.dueAt);
    for (const c of this.concerns) {
      const due = (this.lastResync.get(c) ?? 0) + this.o.resyncMs[c];
      next = next === undefined ? due : Math.min(next, due);
    }
    return next === undefined ? undefined : Math.max(next, this.notBefore);
  }

  /** One timer for everything: re-armed after every request and every apply. */
  private arm(): void {
    if (!this.started || this.stopped || this.running) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const at = this.nextDue();
    if (at === undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.fire();
    }, Math.max(0, at - this.clock.now()));
  }

  private fire(): void {
    if (this.stopped || this.running) return;
    const now = this.clock.now();
    if (now < this.notBefore) return this.arm();
    const work = new Map<C, ApplyKind>();
    const due = [...this.pending.values()].some((p) => p.dueAt <= now);
    const changeDue = [...this.pending.values()].some((p) => p.kind === "change" && p.dueAt <= now);
    for (const c of this.concerns) {
      if ((this.lastResync.get(c) ?? 0) + this.o.resyncMs[c] > now) continue;
      // A change that falls due with a periodic resync goes first, on its own: behind the
      // resync's full read of the kernel (seconds at scale) it would wait as long as that
      // takes. The resync yields once, and runs as the very next apply.
      if (changeDue && !this.yielded.has(c)) {
        this.yielded.add(c);
        continue;
      }
      work.set(c, "resync");
    }
    // Once an apply runs, every pending request joins it: fewer applies, and none is later for it.
    if (due || work.size > 0) for (const [c, p] of this.pending) if (!work.has(c)) work.set(c, p.kind);
    if (work.size === 0) return this.arm();
    void this.run(work, false).catch(() => undefined);
  }

  private run(work: ApplyWork<C>, rethrow: boolean): Promise<void> {
    const startedAt = this.clock.now();
    for (const c of work.keys()) this.pending.delete(c);
    for (const [c, kind] of work) {
      if (kind !== "resync") continue;
      this.lastResync.set(c, startedAt);
      this.yielded.delete(c);
    }
    this.applies++;
    let failure: Error | undefined;
    const done = (async () => {
      try {
        await this.o.apply(work);
        this.failures = 0;
        this.notBefore = this.clock.now() + this.o.minIntervalMs;
      } catch (err) {
        failure = err as Error;
        const wait = Math.min(this.o.backoff.maxMs, this.o.backoff.initialMs * 2 ** this.failures);
        this.failures++;
        this.notBefore = this.clock.now() + wait;
        // The retry reads the kernel again: what the failed apply left is not known.
        for (const c of work.keys()) {
          const had = this.pending.get(c);
          this.pending.set(c, { kind: "resync", dueAt: Math.min(had?.dueAt ?? this.notBefore, this.notBefore) });
        }
        if (!this.stopped) this.o.onError(failure, wait);
      }
    })().finally(() => {
      this.running = undefined;
      this.arm();
    });
    this.running = done;
    return done.then(() => {
      if (failure && rethrow) throw failure;
    });
  }
}
