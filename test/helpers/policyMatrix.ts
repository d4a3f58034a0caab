/**
 * Reachability matrices for the NetworkPolicy end-to-end suite: hand-written text grids
 * ('.' = connected, 'X' = blocked; rows = from, columns = to), their parser, and a diff
 * printer that names every pair that differs.
 *
 *   //      x/a x/b x/c y/a y/b y/c z/a z/b z/c
 *   x/a     .   .   X   .   .   .   .   .   .
 *   ...
 *
 * The first non-comment line is the header (the column pods); every following line is
 * a row: the source pod, then one cell per column. Lines starting with `#` are comments;
 * the header may start with `//`.
 */

/** ICMP: an echo request (the step's port is 0). */
export type Protocol = "TCP" | "UDP" | "ICMP";

export interface Matrix {
  /** Pod keys `<namespace>/<pod>`, the same order for rows and columns. */
  pods: string[];
  /** cells[from][to]: true = connected. */
  cells: boolean[][];
}

export class MatrixParseError extends Error {}

/** Parses a grid; `pods`, when given, is the order the grid must list (header and rows). */
export function parseMatrix(text: string, pods?: readonly string[]): Matrix {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith("#"));
  const headerLine = lines.shift();
  if (headerLine === undefined) throw new MatrixParseError("empty matrix");
  const header = headerLine.replace(/^\/\/\s*/, "").split(/\s+/);
  if (pods && header.join(" ") !== pods.join(" ")) throw new MatrixParseError(`header lists ${header.join(" ")}, expected ${pods.join(" ")}`);
  if (new Set(header).size !== header.length) throw new MatrixParseError(`header repeats a pod: ${header.join(" ")}`);
  if (lines.length !== header.length) throw new MatrixParseError(`${lines.length} rows for ${header.length} columns`);
  const cells = lines.map((line, i) => {
    const [from, ...rest] = line.split(/\s+/);
    if (from !== header[i]) throw new MatrixParseError(`row ${i + 1} is ${from}, expected ${header[i]} (rows follow the header order)`);
    if (rest.length !== header.length) throw new MatrixParseError(`row ${from} has ${rest.length} cells, expected ${header.length}`);
    return rest.map((c, j) => {
      if (c === ".") return true;
      if (c === "X") return false;
      throw new MatrixParseError(`row ${from}, column ${header[j]}: cell "${c}" is neither '.' nor 'X'`);
    });
  });
  return { pods: header, cells };
}

/** A matrix where every pair has the same value. */
export function uniformMatrix(pods: readonly string[], connected: boolean): Matrix {
  return { pods: [...pods], cells: pods.map(() => pods.map(() => connected)) };
}

export function formatMatrix(m: Matrix, mark?: (from: number, to: number) => boolean): string {
  const w = Math.max(...m.pods.map((p) => p.length)) + 2;
  const pad = (s: string): string => s.padEnd(w);
  const out = [pad("//") + m.pods.map(pad).join("").trimEnd()];
  m.cells.forEach((row, i) => {
    out.push(pad(m.pods[i] as string) + row.map((c, j) => pad((c ? "." : "X") + (mark?.(i, j) ? "*" : ""))).join("").trimEnd());
  });
  return out.join("\n");
}

export interface PairDiff {
  from: string;
  to: string;
  expected: boolean;
  observed: boolean;
}

export function diffMatrices(expected: Matrix, observed: Matrix): PairDiff[] {
  if (expected.pods.join(" ") !== observed.pods.join(" ")) throw new Error(`matrices over different pods: ${expected.pods.join(" ")} vs ${observed.pods.join(" ")}`);
  const out: PairDiff[] = [];
  expected.cells.forEach((row, i) =>
    row.forEach((e, j) => {
      const o = observed.cells[i]?.[j] as boolean;
      if (e !== o) out.push({ from: expected.pods[i] as string, to: expected.pods[j] as string, expected: e, observed: o });
    }),
  );
  return out;
}

const word = (c: boolean): string => (c ? "connected" : "blocked");

/**
 * A report for a failed comparison: the observed grid with each differing cell marked
 * `*`, then one line per differing pair. Empty string when the matrices agree.
 */
export function describeDiff(title: string, expected: Matrix, observed: Matrix): string {
  const d = diffMatrices(expected, observed);
  if (d.length === 0) return "";
  const idx = new Map(expected.pods.map((p, i) => [p, i]));
  const marked = new Set(d.map((x) => `${idx.get(x.from)},${idx.get(x.to)}`));
  return [
    `${title}: ${d.length} of ${expected.pods.length ** 2} pairs differ`,
    "observed (* = differs from expected):",
    formatMatrix(observed, (i, j) => marked.has(`${i},${j}`)),
    "expected:",
    formatMatrix(expected),
    ...d.map((x) => `  ${x.from} -> ${x.to}: expected ${word(x.expected)}, observed ${word(x.observed)}`),
  ].join("\n");
}
