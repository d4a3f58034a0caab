/**
 * Reading manifests the way kubectl does: multi-document YAML (`---`), JSON, `kind: List`
 * (or any `...List`) with `items`, comments and empty documents. Every object is checked
 * (known kind, namespace, full schema when asked) and every problem is reported with
 * where it is (`document 2 (NetworkPolicy x/deny-all)`), the field path and the reason,
 * so that a file is fixed in one pass. Pure: text in, objects and problems out.
 */
import { parseAllDocuments } from "yaml";
import { type KubeObject, type ResourceKind, KINDS, apiVersionOf, kindFor, kindsNamed, validateObject } from "../config/resourceKinds.js";

export interface ManifestSource {
  /** The file name as given ("-" for stdin); shown in messages when there are several. */
  name: string;
  text: string;
}

export interface ManifestObject {
  /** Where it came from, for messages: `document 2 (NetworkPolicy x/deny-all)`. */
  where: string;
  kind: ResourceKind;
  /** Set for namespaced kinds (from the object, -n, or "default"); undefined for cluster-scoped ones. */
  namespace: string | undefined;
  name: string;
  /** The validated object (or, without validation, the raw object with its namespace settled). */
  object: KubeObject;
}

export interface ManifestProblem {
  where: string;
  /** Field path (`spec.ingress[0].from[0].ipBlock.cidr`), or undefined for problems of the document itself. */
  path: string | undefined;
  message: string;
}

export interface ParseOptions {
  /** -n: the namespace for namespaced objects that name none; a different metadata.namespace is an error. */
  namespace?: string | undefined;
  /** Validate each object against its kind's schema (apply). delete -f only needs kind, name and namespace. */
  validate: boolean;
  kinds?: readonly ResourceKind[];
}

export interface ParseResult {
  objects: ManifestObject[];
  problems: ManifestProblem[];
  /** Not errors: e.g. the same object twice (the later one wins, as with kubectl). */
  warnings: string[];
}

/** `error: document 2 (NetworkPolicy x/deny-all): spec.podSelector: is required` */
export function formatProblem(p: ManifestProblem): string {
  return `error: ${p.where}: ${p.path !== undefined ? `${p.path}: ` : ""}${p.message}`;
}

export function parseManifests(sources: readonly ManifestSource[], o: ParseOptions): ParseResult {
  const kinds = o.kinds ?? KINDS;
  const objects: ManifestObject[] = [];
  const problems: ManifestProblem[] = [];
  const warnings: string[] = [];
  const many = sources.length > 1;
  for (const src of sources) {
    const fileLabel = many ? `${src.name === "-" ? "<stdin>" : src.name}: ` : "";
    const docs = parseAllDocuments(src.text, { prettyErrors: true, uniqueKeys: true });
    const list = Array.isArray(docs) ? docs : [];
    list.forEach((doc, d) => {
      const docLabel = `${fileLabel}document ${d + 1}`;
      if (doc.errors.length > 0) {
        for (const e of doc.errors) problems.push({ where: docLabel, path: undefined, message: `not valid YAML: ${firstLine(e.message)}` });
        return;
      }
      let value: unknown;
      try {
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        problems.push({ where: docLabel, path: undefined, message: `cannot read: ${(err as Error).message}` });
        return;
      }
      if (value === null || value === undefined) return; // empty document (or only comments)
      if (!isRecord(value)) {
        problems.push({ where: docLabel, path: undefined, message: `expected an object with apiVersion and kind, found ${describeValue(value)}` });
        return;
      }
      if (typeof value["kind"] === "string" && value["kind"].endsWith("List") && Array.isArray(value["items"])) {
        (value["items"] as unknown[]).forEach((item, i) => one(item, `${docLabel} item ${i + 1}`));
        return;
      }
      one(value, docLabel);
    });
  }

  function one(value: unknown, label: string): void {
    if (!isRecord(value)) {
      problems.push({ where: label, path: undefined, message: `expected an object with apiVersion and kind, found ${describeValue(value)}` });
      return;
    }
    const apiVersion = value["apiVersion"];
    const kindName = value["kind"];
    const meta = isRecord(value["metadata"]) ? value["metadata"] : undefined;
    const name = typeof meta?.["name"] === "string" && meta["name"] !== "" ? meta["name"] : undefined;
    const metaNs = typeof meta?.["namespace"] === "string" && meta["namespace"] !== "" ? meta["namespace"] : undefined;
    const roughLabel = `${label} (${typeof kindName === "string" ? kindName : "?"} ${metaNs ? `${metaNs}/` : ""}${name ?? "<no name>"})`;
    const missing: ManifestProblem[] = [];
    if (typeof apiVersion !== "string" || apiVersion === "") missing.push({ where: roughLabel, path: "apiVersion", message: "is required" });
    if (typeof kindName !== "string" || kindName === "") missing.push({ where: roughLabel, path: "kind", message: "is required" });
    if (missing.length) {
      problems.push(...missing);
      return;
    }
    const kind = kindFor(apiVersion as string, kindName as string, kinds);
    if (!kind) {
      const sameName = kindsNamed(kindName as string, kinds);
      const hint = sameName.length ? `Sluice serves ${kindName as string} as ${sameName.map(apiVersionOf).join(", ")}` : `known kinds: ${kinds.map((k) => `${k.kind} (${apiVersionOf(k)})`).join(", ")}`;
      problems.push({ where: roughLabel, path: undefined, message: `no kind "${kindName as string}" is registered for version "${apiVersion as string}" (${hint})` });
      return;
    }
    let namespace: string | undefined;
    if (kind.namespaced) {
      if (metaNs !== undefined && o.namespace !== undefined && metaNs !== o.namespace) {
        problems.push({ where: roughLabel, path: "metadata.namespace", message: `the namespace from the provided object "${metaNs}" does not match the namespace "${o.namespace}". You must pass '--namespace=${metaNs}' to perform this operation.` });
        return;
      }
      namespace = metaNs ?? o.namespace ?? "default";
    }
    const where = `${label} (${kind.kind} ${namespace !== undefined ? `${namespace}/` : ""}${name ?? "<no name>"})`;
    const metadata: Record<string, unknown> = { ...(meta ?? {}) };
    if (namespace !== undefined) metadata["namespace"] = namespace;
    else delete metadata["namespace"]; // a cluster-scoped object has none, whatever the file says
    const settled = { ...value, metadata };
    if (!o.validate) {
      if (name === undefined) {
        problems.push({ where, path: "metadata.name", message: "is required" });
        return;
      }
      objects.push({ where, kind, namespace, name, object: settled as unknown as KubeObject });
      return;
    }
    const v = validateObject(kind, settled);
    if (!v.ok) {
      for (const i of v.issues) problems.push({ where, path: i.path, message: i.message });
      return;
    }
    for (const d of v.dropped) warnings.push(`warning: ${where}: ${d.path}: ${d.message}`);
    objects.push({ where, kind, namespace, name: v.object.metadata.name, object: v.object });
  }

  // The same object twice: the later one wins, as when kubectl applies them in turn.
  const last = new Map<string, number>();
  objects.forEach((m, i) => last.set(identity(m), i));
  const kept = objects.filter((m, i) => {
    const winner = last.get(identity(m)) as number;
    if (winner !== i) warnings.push(`warning: ${m.where} is replaced by ${(objects[winner] as ManifestObject).where}, later in the input`);
    return winner === i;
  });
  return { objects: kept, problems, warnings };
}

const identity = (m: ManifestObject): string => `${apiVersionOf(m.kind)}/${m.kind.kind}/${m.namespace ?? ""}/${m.name}`;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describeValue(v: unknown): string {
  if (Array.isArray(v)) return "a list";
  if (v === null || v === undefined) return "nothing";
  return `a ${typeof v} (${JSON.stringify(v).slice(0, 40)})`;
}

function firstLine(s: string): string {
  return s.split("\n")[0] ?? s;
}
