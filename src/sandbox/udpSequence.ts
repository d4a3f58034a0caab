/**
 * Numbered UDP datagrams from one sandbox pod to another every few milliseconds, each from
 * a fresh socket (a new flow, so the rules judge every one rather than conntrack): what a
 * test uses to see an outage of a few tens of milliseconds, such as an agent restart. The
 * receiver records when each number arrived, so "delivered" is counted where delivery
 * happens, and no echo is needed.
 *
 * Sender and receiver are small processes of their own in the pods' namespaces, run with
 * real-time priority (`chrt -f 1`): on a busy machine an ordinary process can go
 * unscheduled for a few hundred milliseconds while agents start, which would look like an
 * outage or hide one. Both mostly sleep, and both stop by themselves after `maxMs`;
 * stop() ends them earlier. Times are the host's wall clock in ms (one kernel, one clock).
 *
 * It does not judge what it saw: that is the test's job.
 */
import { isIPv6 } from "node:net";
import type { Sandbox } from "./cluster.js";
import { JsonLinesProcess } from "./jsonLinesProcess.js";
import { type PodRef, getPod, podId } from "./pods.js";

export interface UdpSequenceOptions {
  /** The receiver's UDP port in the target pod (not one the pod's server serves). */
  port: number;
  /** Time between two datagrams (10-20 ms to see a short outage). */
  intervalMs: number;
  /** Both processes stop by themselves after this long, even if nobody stops them. */
  maxMs: number;
}

export interface UdpSequenceResult {
  intervalMs: number;
  /** sent[n]: when datagram n was sent. */
  sent: number[];
  /** [n, when it arrived], in arrival order; a number seen twice is listed twice. */
  received: Array<[number, number]>;
}

export interface UdpSequence {
  /** Stops sending, gives datagrams in flight time to arrive, and returns what both ends saw. */
  stop(): Promise<UdpSequenceResult>;
}

const SEQUENCE_JS = String.raw`
"use strict";
const dgram = require("dgram");
const cfg = JSON.parse(process.argv[1]);
const say = (o, then) => process.stdout.write(JSON.stringify(o) + "\n", then);
const type = cfg.family === 6 ? "udp6" : "udp4";
let finished = false, onFinish = () => process.exit(0);
const finish = () => { if (!finished) { finished = true; onFinish(); } };
setTimeout(finish, cfg.maxMs);
process.stdin.on("end", finish);
process.stdin.resume();
process.on("SIGTERM", finish);
if (cfg.mode === "receive") {
  const got = [];
  const u = dgram.createSocket(type);
  u.on("message", (m) => { const p = m.toString().split(" "); if (p[0] === "seq" && p[1] === cfg.id) got.push([Number(p[2]), Date.now()]); });
  u.on("error", (e) => say({ error: "receiver: " + e.message }, () => process.exit(1)));
  u.bind(cfg.port, () => say({ ready: true }));
  onFinish = () => { try { u.close(); } catch (_) {} say({ received: got }, () => process.exit(0)); };
} else {
  const sent = [];
  let timer;
  const tick = () => {
    if (finished) return;
    const n = sent.length;
    const u = dgram.createSocket(type);
    u.on("error", () => {});
    sent.push(Date.now());
    u.send(Buffer.from("seq " + cfg.id + " " + n), cfg.port, cfg.host, () => { try { u.close(); } catch (_) {} });
    timer = setTimeout(tick, cfg.intervalMs);
  };
  onFinish = () => { clearTimeout(timer); say({ sent }, () => process.exit(0)); };
  say({ ready: true });
  tick();
}
`;

/** One of the two processes, at real-time priority. */
const sequenceEnd = (what: string, netns: string, cfg: Record<string, unknown>): JsonLinesProcess => new JsonLinesProcess(what, netns, ["chrt", "-f", "1", process.execPath, "-e", SEQUENCE_JS, JSON.stringify(cfg)]);

/** Starts the receiver in `to`, then the sender in `from`; both stop by themselves after maxMs. */
export async function startUdpSequence(sb: Sandbox, from: string | PodRef, to: string | PodRef, o: UdpSequenceOptions): Promise<UdpSequence> {
  const src = getPod(sb, from);
  const dst = getPod(sb, to);
  const host = dst.ips[0];
  if (!host) throw new Error(`pod ${podId(dst)} has no address`);
  const family = isIPv6(host) ? 6 : 4;
  const id = `${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e9)}`;
  const what = `UDP sequence ${podId(src)} -> ${podId(dst)}:${o.port}`;
  const receiver = sequenceEnd(`${what} (receiver)`, dst.netns, { mode: "receive", id, family, port: o.port, maxMs: o.maxMs });
  await receiver.line("ready", 10_000);
  const sender = sequenceEnd(`${what} (sender)`, src.netns, { mode: "send", id, family, host, port: o.port, intervalMs: o.intervalMs, maxMs: o.maxMs });
  try {
    await sender.line("ready", 10_000);
  } catch (err) {
    receiver.kill();
    throw err;
  }
  const bound = o.maxMs + 10_000;
  return {
    async stop(): Promise<UdpSequenceResult> {
      sender.finish();
      const { sent } = (await sender.line("sent", bound)) as { sent: number[] };
      // Datagrams still in flight get a moment on a path that works.
      await new Promise((r) => setTimeout(r, 200));
      receiver.finish();
      const { received } = (await receiver.line("received", bound)) as { received: Array<[number, number]> };
      return { intervalMs: o.intervalMs, sent, received };
    },
  };
}
