/**
 * The plugin's log: pino-shaped JSON lines on stderr (the runtime keeps stderr; stdout
 * is the result). pino itself would cost start-up time on every pod ADD for a handful
 * of lines, so this writes the same record shape directly.
 */
import { writeSync } from "node:fs";
import type { CniLogLevel } from "../config/cniConfig.js";

const LEVELS: Record<Exclude<CniLogLevel, "silent">, number> = { debug: 20, info: 30, warn: 40, error: 50 };

export interface CniLog {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
  /** Fields every later record carries (container ID, command). */
  bind(fields: Record<string, unknown>): void;
  setLevel(level: CniLogLevel): void;
}

/** Straight to descriptor 2: process.stderr would set up a stream for a few lines. A lost log line never fails the call. */
const toStderr = (line: string): void => {
  try {
    writeSync(2, line);
  } catch {
    /* stderr closed or full */
  }
};

export function makeCniLog(level: CniLogLevel = "warn", write: (line: string) => void = toStderr): CniLog {
  let min = level === "silent" ? Infinity : LEVELS[level];
  const base: Record<string, unknown> = { name: "sluice-cni", pid: process.pid };
  const emit = (lvl: keyof typeof LEVELS) => (fields: Record<string, unknown>, msg: string) => {
    if (LEVELS[lvl] < min) return;
    const rec: Record<string, unknown> = { level: LEVELS[lvl], time: Date.now(), ...base, ...fields, msg };
    if (rec["err"] instanceof Error) rec["err"] = { message: rec["err"].message, stack: rec["err"].stack };
    write(JSON.stringify(rec) + "\n");
  };
  return {
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    bind: (fields) => Object.assign(base, fields),
    setLevel: (l) => {
      min = l === "silent" ? Infinity : LEVELS[l];
    },
  };
}
