/**
 * The reachability matrix as sluicectl prints it, one code for `sandbox matrix` (what real
 * probes observed) and `explain --matrix` (what policy says), so the two can be compared
 * line by line.
 */
import { type Reachability, formatMatrix, formatPortSpec } from "../sandbox/probe.js";

export interface MatrixView {
  port: number;
  protocol: string;
  pods: string[];
  reachability: Reachability;
}

export interface MatrixOutputOptions {
  json: boolean;
  /** What a '.' means: "connected" (probes) or "allowed" (policy). */
  yes: string;
  /** What an 'X' means. */
  no: string;
  /** Appended to the summary line, e.g. " (830 ms)". */
  summaryTail?: string;
  /** Extra fields of the JSON output. */
  extra?: Record<string, unknown>;
}

export function renderMatrixOutput(m: MatrixView, o: MatrixOutputOptions): string {
  if (o.json) return JSON.stringify({ port: m.port, protocol: m.protocol, pods: m.pods, matrix: m.reachability, ...(o.extra ?? {}) }, null, 2) + "\n";
  const cells = m.pods.flatMap((f) => m.pods.map((t) => m.reachability[f]?.[t]));
  const ok = cells.filter((c) => c === true).length;
  return [
    `${formatPortSpec(m)}: rows connect to columns ('.' ${o.yes}, 'X' ${o.no})`,
    "",
    formatMatrix(m).trimEnd(),
    "",
    `${ok}/${cells.length} pairs ${o.yes}${o.summaryTail ?? ""}`,
    "",
  ].join("\n");
}
