/**
 * What a UDP sequence (src/sandbox/udpSequence.ts: numbered datagrams, each a new flow,
 * every 10 ms, timestamped where they are sent and where they arrive) says about the path:
 * the numbers that never arrived, the longest silence the path caused, and whether the
 * sender kept to its interval (a sender that paused leaves a hole in which an outage would
 * go unseen).
 */
import type { UdpSequenceOptions, UdpSequenceResult } from "../../src/sandbox/udpSequence.js";

/** A datagram every 10 ms to a port no pod server uses; both ends stop by themselves after a minute. */
export const SEQUENCE: UdpSequenceOptions = { port: 9000, intervalMs: 10, maxMs: 60_000 };
/** The longest silence a restart may cause (issue 17): less than TCP's 200 ms minimum retransmission timeout. */
export const MAX_GAP_MS = 100;

export interface SequenceReport {
  sent: number;
  /** Distinct numbers that arrived. */
  delivered: number;
  /** Numbers that never arrived. */
  lost: number[];
  /**
   * The longest time between the arrivals of two consecutive delivered numbers, less the
   * sender's own lateness between the two sends: how long the path was silent, not the sender.
   */
  gapMs: number;
  /** The longest time between two sends: the shortest outage the run could have missed. */
  sendGapMs: number;
  /** First send to last send. */
  spanMs: number;
}

export function sequenceReport(r: UdpSequenceResult): SequenceReport {
  const arrived = new Map<number, number>();
  for (const [n, at] of r.received) if (!arrived.has(n) && n >= 0 && n < r.sent.length) arrived.set(n, at);
  const lost: number[] = [];
  let gapMs = 0;
  let sendGapMs = 0;
  let prev: number | undefined; // the last delivered number
  r.sent.forEach((sentAt, n) => {
    if (n > 0) sendGapMs = Math.max(sendGapMs, sentAt - (r.sent[n - 1] as number));
    const at = arrived.get(n);
    if (at === undefined) {
      lost.push(n);
      return;
    }
    if (prev !== undefined) {
      const late = Math.max(0, sentAt - (r.sent[prev] as number) - (n - prev) * r.intervalMs);
      gapMs = Math.max(gapMs, at - (arrived.get(prev) as number) - late);
    }
    prev = n;
  });
  const spanMs = r.sent.length > 0 ? (r.sent.at(-1) as number) - (r.sent[0] as number) : 0;
  return { sent: r.sent.length, delivered: arrived.size, lost, gapMs, sendGapMs, spanMs };
}

/** Numbers as ranges ("3-17, 40"), at most `max` ranges. */
export function formatNumbers(ns: readonly number[], max = 10): string {
  const ranges: string[] = [];
  for (let i = 0; i < ns.length; ) {
    let j = i;
    while (j + 1 < ns.length && (ns[j + 1] as number) === (ns[j] as number) + 1) j++;
    ranges.push(i === j ? String(ns[i]) : `${ns[i]}-${ns[j]}`);
    i = j + 1;
  }
  return ranges.length > max ? `${ranges.slice(0, max).join(", ")}, ... (${ns.length} in all)` : ranges.join(", ");
}

export const describeSequence = (r: SequenceReport): string =>
  `${r.sent} sent over ${r.spanMs} ms, ${r.delivered} delivered, lost [${formatNumbers(r.lost)}], longest silence ${r.gapMs} ms, longest pause of the sender ${r.sendGapMs} ms`;
