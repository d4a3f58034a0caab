/** A pino logger whose records the test can read. */
import { Writable } from "node:stream";
import { type Logger, pino } from "pino";

export interface CapturedLog {
  log: Logger;
  records: Array<Record<string, unknown>>;
  messages: () => string[];
}

export function captureLog(level = "debug"): CapturedLog {
  const records: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) records.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level }, stream), records, messages: () => records.map((r) => String(r["msg"])) };
}
