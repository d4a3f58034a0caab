/**
 * A small helper process in a network namespace that reports in JSON lines on stdout and
 * takes commands (or the end of its input) on stdin: the sandbox's traffic tools (UDP
 * sequences, and the tests' raw-packet senders and counters) talk to theirs this way. It
 * knows nothing of what the lines mean.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";

export class JsonLinesProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Array<Record<string, unknown>> = [];
  private waiting: (() => void) | undefined;
  private exited = false;
  private stderr = "";

  /** Runs `argv` in `netns` (`ip netns exec`); `what` names it in errors. */
  constructor(
    private readonly what: string,
    netns: string,
    argv: readonly string[],
  ) {
    this.child = spawn("ip", ["netns", "exec", netns, ...argv]);
    let buf = "";
    this.child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        this.lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
      }
      this.waiting?.();
    });
    this.child.stderr.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.child.on("exit", () => {
      this.exited = true;
      this.waiting?.();
    });
  }

  /**
   * The first unread line that has `key`, within timeoutMs (it is then read: a key the
   * process prints again is found afresh). A line with "error" fails the call.
   */
  async line(key: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex((x) => key in x || "error" in x);
      const l = i >= 0 ? this.lines[i] : undefined;
      if (l && "error" in l) throw new Error(`${this.what}: ${String(l["error"])}`);
      if (l) return this.lines.splice(i, 1)[0] as Record<string, unknown>;
      if (this.exited || Date.now() > deadline) {
        this.kill();
        throw new Error(`${this.what}: no "${key}" ${this.exited ? "before it exited" : `within ${timeoutMs} ms`}${this.stderr ? `: ${this.stderr.trim()}` : ""}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiting = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** One line of input for the process. */
  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /** Ends its input (the helpers take that as "stop"). */
  finish(): void {
    this.child.stdin.end();
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }
}
