/** Output of `sluicectl get`, shaped like kubectl's: tables, ages, -o yaml/json/name. Pure. */
import { stringify } from "yaml";
import { type KubeObject, type ResourceKind, qualifiedSingular } from "../config/resourceKinds.js";

/** kubectl's HumanDuration: 45s, 3m20s, 47m, 5h12m, 20h, 3d4h, 12d, 2y30d. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${Math.floor(days / 365)}y` : `${Math.floor(days / 365)}y${days % 365}d`;
  return `${Math.floor(days / 365)}y`;
}

export function age(o: KubeObject, now: number): string {
  const t = o.metadata.creationTimestamp ? Date.parse(o.metadata.creationTimestamp) : NaN;
  return Number.isNaN(t) ? "<unknown>" : humanDuration(now - t);
}

/** Columns padded to the widest cell plus three spaces, as kubectl's tabwriter does. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return "";
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join("")).join("\n") + "\n";
}

export interface TableOptions {
  allNamespaces: boolean;
  wide: boolean;
  /** Prefix names with the kind (`networkpolicy.networking.k8s.io/x`), as kubectl does when listing several kinds. */
  withKind: boolean;
  now: number;
}

export function renderTable(kind: ResourceKind, items: readonly KubeObject[], o: TableOptions): string {
  const cols = (kind.columns ?? []).filter((c) => o.wide || !c.wide);
  const showNs = o.allNamespaces && kind.namespaced;
  // Wide-only columns go after AGE, as kubectl places them.
  const narrow = cols.filter((c) => !c.wide);
  const wide = cols.filter((c) => c.wide);
  const head = [...(showNs ? ["NAMESPACE"] : []), "NAME", ...narrow.map((c) => c.header), "AGE", ...wide.map((c) => c.header)];
  const rows = items.map((it) => [...(showNs ? [it.metadata.namespace ?? ""] : []), o.withKind ? `${qualifiedSingular(kind)}/${it.metadata.name}` : it.metadata.name, ...narrow.map((c) => c.value(it)), age(it, o.now), ...wide.map((c) => c.value(it))]);
  return formatTable([head, ...rows]);
}

/** `-o yaml` / `-o json`: the object itself when one was asked for by name, else a v1 List. */
export function renderObjects(items: readonly KubeObject[], format: "yaml" | "json", single: boolean): string {
  const doc = single && items.length === 1 ? items[0] : { apiVersion: "v1", kind: "List", items, metadata: { resourceVersion: "" } };
  return format === "json" ? JSON.stringify(doc, null, 4) + "\n" : stringify(doc, { lineWidth: 0 });
}

export function renderNames(kind: ResourceKind, items: readonly KubeObject[]): string {
  return items.map((i) => `${qualifiedSingular(kind)}/${i.metadata.name}\n`).join("");
}
