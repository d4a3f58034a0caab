import { type Logger, pino } from "pino";

export function makeLogger(level: string, name: string): Logger {
  return pino({ name, level, base: { node: process.env["NODE_NAME"] } });
}
