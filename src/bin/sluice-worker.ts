/**
 * sluice-worker: the agent's worker thread (started by src/util/workerThread.ts, never on
 * its own). It runs the pure, CPU-heavy steps that must not hold up the agent's event
 * loop: validating large objects and rendering the policy. One task at a time, in order.
 */
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { parentPort } from "node:worker_threads";
import { validateObjectTask, VALIDATE_OBJECT_TASK } from "../config/offThreadValidation.js";
import { renderPolicyTask, RENDER_POLICY_TASK } from "../agent/policyRenderTask.js";
import type { WorkerReply, WorkerRequest } from "../util/workerThread.js";

// Each task takes its input as posted and returns what is posted back (structured clone).
const TASKS: Readonly<Record<string, (input: never) => unknown>> = {
  [VALIDATE_OBJECT_TASK]: validateObjectTask,
  [RENDER_POLICY_TASK]: renderPolicyTask,
};

/** How much nicer than the agent's event loop the thread runs (Linux nice levels). */
export const WORKER_NICENESS = 10;

const port = parentPort;
if (!port) {
  process.stderr.write("sluice-worker runs inside sluice-agent (as a worker thread), not on its own\n");
  process.exit(2);
}
lowerOwnPriority();

/**
 * On a busy node the event loop (probes, watches, the dataplane queue) must not wait for
 * the CPU behind a long validation or render of this thread: the thread gives itself a
 * lower priority. Linux keeps nice levels per thread (setpriority on a thread id changes
 * that thread only), and anyone may lower their own priority. Elsewhere it stays as is.
 */
function lowerOwnPriority(): void {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    if (!Number.isInteger(tid) || tid <= 0) return;
    setPriority(tid, Math.min(19, getPriority(tid) + WORKER_NICENESS));
  } catch {
    // not Linux, or no /proc: the same priority as the event loop
  }
}
port.on("message", (m: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    const task = TASKS[m.task];
    if (!task) throw new Error(`unknown task ${m.task}`);
    reply = { id: m.id, ok: true, output: task(m.input as never) };
  } catch (err) {
    reply = { id: m.id, ok: false, error: (err as Error).message };
  }
  port.postMessage(reply);
});
