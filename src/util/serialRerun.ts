/**
 * Runs one piece of work at a time, coalescing requests: a request while it runs asks
 * for exactly one more run after it (however many arrive), and is answered when that
 * run is done. For scans and syncs that must see every change but never overlap.
 */
export class SerialRerun {
  private running: Promise<void> | undefined;
  private again = false;

  /** `work` must not throw (log its failures); `stopped` ends the reruns. */
  constructor(
    private readonly work: () => Promise<void>,
    private readonly stopped: () => boolean,
  ) {}

  request(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.work();
      } while (this.again && !this.stopped());
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** The run in progress, if any (to wait for it on stop). */
  get current(): Promise<void> | undefined {
    return this.running;
  }
}
