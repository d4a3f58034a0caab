/**
 * `sluicectl apply`, `get` and `delete`: kubectl's verbs for the objects Sluice keeps in
 * etcd (etcd mode). apply validates everything before it writes anything and writes a
 * whole input in one etcd transaction.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { ConfigError } from "../config/errors.js";
import type { FlagSpec, RawFlags } from "../config/flags.js";
import { type KubeObject, type ResourceKind, kindNamesHelp, qualifiedPlural, qualifiedSingular, resolveKindName } from "../config/resourceKinds.js";
import { connectEtcd } from "../datastore/etcdClient.js";
import { type ApplyResult, BatchWriteError, DEFAULT_MAX_TXN_OPS, EtcdResourceStore, type ObjectRef, ResourceValidationError, TooManyOpsError } from "../datastore/etcdResources.js";
import { SLUICE_PREFIX } from "../datastore/resourceKeys.js";
import { ETCD_FLAGS } from "./etcdFlags.js";
import { type ManifestSource, formatProblem, parseManifests } from "./manifests.js";
import { renderNames, renderObjects, renderTable } from "./printers.js";

export interface ResourceIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

export interface ResourceCommand {
  summary: string;
  flags: FlagSpec[];
  run: (flags: RawFlags, args: string[], io: ResourceIo) => Promise<number>;
}

/** The etcd connection flags (flannel's --etcd-prefix is not used here) and where Sluice's objects live. */
export const RESOURCE_ETCD_FLAGS: FlagSpec[] = [
  ...ETCD_FLAGS.filter((f) => f.name !== "etcd-prefix"),
  { name: "resource-prefix", kind: "string", help: "etcd prefix of Sluice's objects (namespaces, pods, policies, endpoints)", default: SLUICE_PREFIX },
];

const NAMESPACE_FLAGS: FlagSpec[] = [
  { name: "n", kind: "string", help: "namespace (default: default)" },
  { name: "namespace", kind: "string", help: "same as -n" },
];

const str = (f: RawFlags, k: string): string | undefined => (typeof f[k] === "string" ? (f[k] as string) : undefined);
const list = (f: RawFlags, k: string): string[] => {
  const v = f[k];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
};

function namespaceFlag(flags: RawFlags, cmd: string): string | undefined {
  const a = str(flags, "n");
  const b = str(flags, "namespace");
  if (a !== undefined && b !== undefined && a !== b) throw new ConfigError("-n", `"${a}" conflicts with --namespace "${b}"`, cmd);
  const ns = a ?? b;
  if (ns !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns)) throw new ConfigError("-n", `"${ns}" is not a valid namespace name`, cmd);
  return ns;
}

/** The etcd client the RESOURCE_ETCD_FLAGS describe. */
export function etcdClientFrom(flags: RawFlags): Etcd3 {
  const endpoints = (str(flags, "etcd-endpoints") ?? "http://127.0.0.1:2379").split(",").map((s) => s.trim());
  return connectEtcd({ endpoints, caFile: str(flags, "etcd-cafile"), certFile: str(flags, "etcd-certfile"), keyFile: str(flags, "etcd-keyfile"), username: str(flags, "etcd-username"), password: str(flags, "etcd-password") });
}

function storeFrom(flags: RawFlags): { store: EtcdResourceStore; client: Etcd3 } {
  const client = etcdClientFrom(flags);
  const maxText = str(flags, "max-txn-ops");
  const maxTxnOps = maxText === undefined ? DEFAULT_MAX_TXN_OPS : Number(maxText);
  if (!Number.isInteger(maxTxnOps) || maxTxnOps < 1) throw new ConfigError("--max-txn-ops", `"${maxText}" must be a positive integer`, "sluicectl");
  return { store: new EtcdResourceStore(client, { prefix: str(flags, "resource-prefix") ?? SLUICE_PREFIX, maxTxnOps }), client };
}

/** Reads -f arguments: files, "-" for stdin, or directories (their .yaml, .yml and .json files, sorted). */
export function readSources(files: readonly string[], cmd: string, stdin: () => string = () => readFileSync(0, "utf8")): ManifestSource[] {
  if (files.length === 0) throw new ConfigError("-f", "is required (a file, a directory, or - for stdin)", cmd);
  const out: ManifestSource[] = [];
  for (const f of files) {
    if (f === "-") {
      out.push({ name: "-", text: stdin() });
      continue;
    }
    let st;
    try {
      st = statSync(f);
    } catch {
      throw new ConfigError("-f", `${f}: no such file or directory`, cmd);
    }
    if (st.isDirectory()) {
      for (const e of readdirSync(f).sort()) if (/\.(ya?ml|json)$/.test(e)) out.push({ name: join(f, e), text: readFileSync(join(f, e), "utf8") });
    } else {
      out.push({ name: f, text: readFileSync(f, "utf8") });
    }
  }
  return out;
}

async function withStore<T>(flags: RawFlags, work: (store: EtcdResourceStore) => Promise<T>): Promise<T> {
  const { store, client } = storeFrom(flags);
  try {
    return await work(store);
  } catch (err) {
    // etcd3's errors (GRPC*, Etcd*) do not say which etcd; the user needs to know.
    const e = err as Error;
    if (/^(GRPC|Etcd)/.test(e.constructor.name)) throw new Error(`error: etcd at ${str(flags, "etcd-endpoints") ?? "http://127.0.0.1:2379"}: ${e.message.trim()}`);
    throw err;
  } finally {
    client.close();
  }
}

const notFound = (kind: ResourceKind, name: string): string => `Error from server (NotFound): ${qualifiedPlural(kind)} "${name}" not found\n`;

/** `KIND NAME...`, `KIND/NAME ...`, or `KIND1,KIND2` (get only): what the positional arguments ask for. */
export function parseTargets(args: readonly string[], cmd: string): { kinds: ResourceKind[]; names: { kind: ResourceKind; name: string }[] } {
  const resolve = (text: string): ResourceKind => {
    const k = resolveKindName(text);
    if (!k) throw new ConfigError("TYPE", `the server doesn't have a resource type "${text}" (known: ${kindNamesHelp()})`, cmd);
    return k;
  };
  if (args.length === 0) throw new ConfigError("TYPE", `is required (one of: ${kindNamesHelp()})`, cmd);
  if (args.every((a) => a.includes("/"))) {
    const names = args.map((a) => {
      const [k, n] = a.split("/", 2) as [string, string];
      if (!n) throw new ConfigError("TYPE/NAME", `"${a}" names no object`, cmd);
      return { kind: resolve(k), name: n };
    });
    return { kinds: [...new Set(names.map((n) => n.kind))], names };
  }
  const [first, ...rest] = args as [string, ...string[]];
  if (rest.some((a) => a.includes("/"))) throw new ConfigError("NAME", "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form", cmd);
  const kinds = first.split(",").filter(Boolean).map(resolve);
  if (rest.length > 0 && kinds.length > 1) throw new ConfigError("NAME", "names can only be given with a single resource type", cmd);
  return { kinds, names: rest.map((name) => ({ kind: kinds[0] as ResourceKind, name })) };
}

type Requirement = { key: string; op: "=" | "!=" | "exists" | "!exists" | "in" | "notin"; values: string[] };

/** A `-l` label selector: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`, comma-separated. */
export function parseSelectorText(text: string): Requirement[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur.trim() || parts.length) parts.push(cur);
  return parts.map((raw) => {
    const p = raw.trim();
    let m = /^(\S+?)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p);
    if (m) return { key: m[1] as string, op: m[2] as "in" | "notin", values: (m[3] as string).split(",").map((s) => s.trim()) };
    m = /^([^=!\s]+)\s*(==|=|!=)\s*([^=!\s,()]*)$/.exec(p);
    if (m) return { key: m[1] as string, op: m[2] === "!=" ? "!=" : "=", values: [m[3] as string] };
    m = /^!\s*([^=!\s]+)$/.exec(p);
    if (m) return { key: m[1] as string, op: "!exists", values: [] };
    if (/^[^=!\s(),]+$/.test(p)) return { key: p, op: "exists", values: [] };
    throw new ConfigError("-l", `"${p}" is not a label selector requirement (a=b, a!=b, a, !a, a in (x,y), a notin (x,y))`, "sluicectl get");
  });
}

export function selectorMatches(reqs: readonly Requirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case "=":
        return has && v === r.values[0];
      case "!=":
        return !has || v !== r.values[0];
      case "exists":
        return has;
      case "!exists":
        return !has;
      case "in":
        return has && r.values.includes(v as string);
      case "notin":
        return !has || !r.values.includes(v as string);
    }
    return false;
  });
}

export const RESOURCE_COMMANDS: Record<string, ResourceCommand> = {
  apply: {
    summary: "create or update objects from YAML/JSON like kubectl apply: sluicectl apply -f policy.yaml [-n ns]",
    flags: [
      ...RESOURCE_ETCD_FLAGS,
      { name: "f", kind: "list", help: "file, directory or - for stdin; multi-document YAML, JSON and kind: List all work" },
      ...NAMESPACE_FLAGS,
      { name: "dry-run", kind: "boolean", help: "validate and report what would change, write nothing" },
      { name: "max-txn-ops", kind: "string", help: "most objects one etcd transaction may change (etcd's --max-txn-ops)", default: String(DEFAULT_MAX_TXN_OPS) },
      { name: "atomic", kind: "boolean", help: "all or nothing: one transaction, refused when the input needs more than --max-txn-ops writes" },
    ],
    run: async (flags, args, io) => {
      const cmd = "sluicectl apply";
      if (args.length > 0) throw new ConfigError(args[0] as string, "unexpected argument (files go after -f)", cmd);
      const namespace = namespaceFlag(flags, cmd);
      const parsed = parseManifests(readSources(list(flags, "f"), cmd), { namespace, validate: true });
      for (const w of parsed.warnings) io.err(w + "\n");
      if (parsed.problems.length > 0) {
        for (const p of parsed.problems) io.err(formatProblem(p) + "\n");
        io.err(`error: ${parsed.problems.length} problem${parsed.problems.length === 1 ? "" : "s"} found; nothing was applied\n`);
        return 1;
      }
      if (parsed.objects.length === 0) {
        io.err("error: no objects passed to apply\n");
        return 1;
      }
      const dryRun = flags["dry-run"] === true;
      const report = (results: readonly ApplyResult[]): void => {
        for (const r of results) io.out(`${qualifiedSingular(r.kind)}/${r.name} ${r.outcome}${dryRun ? " (dry run)" : ""}\n`);
      };
      const objects = parsed.objects.map((o) => o.object);
      try {
        await withStore(flags, async (store) => {
          // Input larger than one transaction goes in several (each object's line printed as its transaction commits), as kubectl applies a big directory; --atomic keeps one.
          if (flags["atomic"] === true || objects.length <= store.maxTxnOps) report(await store.applyAll(objects, { dryRun }));
          else {
            io.err(`applying ${objects.length} objects in transactions of at most ${store.maxTxnOps} (--max-txn-ops; --atomic for all or nothing)\n`);
            await store.applyInBatches(objects, { dryRun, onWritten: report });
          }
        });
      } catch (err) {
        if (err instanceof ResourceValidationError || err instanceof TooManyOpsError) {
          io.err(`error: ${err.message}\nnothing was applied\n`);
          return 1;
        }
        if (err instanceof BatchWriteError) {
          io.err(`error: ${err.message}\n`);
          return 1;
        }
        throw err;
      }
      return 0;
    },
  },
  get: {
    summary: `list or show objects like kubectl get: sluicectl get netpol [NAME] [-n ns | -A] [-o yaml|json|wide|name] (types: ${kindNamesHelp()})`,
    flags: [
      ...RESOURCE_ETCD_FLAGS,
      ...NAMESPACE_FLAGS,
      { name: "A", kind: "boolean", help: "all namespaces" },
      { name: "all-namespaces", kind: "boolean", help: "same as -A" },
      { name: "o", kind: "string", help: "output: wide, yaml, json or name (default: a table)" },
      { name: "output", kind: "string", help: "same as -o" },
      { name: "l", kind: "string", help: "label selector (a=b, a!=b, a, !a, a in (x,y))" },
      { name: "selector", kind: "string", help: "same as -l" },
    ],
    run: async (flags, args, io) => {
      const cmd = "sluicectl get";
      const output = str(flags, "o") ?? str(flags, "output") ?? "";
      if (!["", "wide", "yaml", "json", "name"].includes(output)) throw new ConfigError("-o", `"${output}" must be wide, yaml, json or name`, cmd);
      const all = flags["A"] === true || flags["all-namespaces"] === true;
      const nsFlag = namespaceFlag(flags, cmd);
      if (all && nsFlag !== undefined) throw new ConfigError("-A", "cannot be combined with -n", cmd);
      const namespace = nsFlag ?? "default";
      const selectorText = str(flags, "l") ?? str(flags, "selector");
      const selector = selectorText !== undefined ? parseSelectorText(selectorText) : undefined;
      const { kinds, names } = parseTargets(args, cmd);
      if (names.length > 0 && selector) throw new ConfigError("-l", "cannot be combined with names", cmd);
      let code = 0;
      const sections: { kind: ResourceKind; items: KubeObject[] }[] = [];
      await withStore(flags, async (store) => {
        for (const kind of kinds) {
          const ns = kind.namespaced ? (all && names.length === 0 ? undefined : namespace) : undefined;
          let items: KubeObject[];
          const wanted = names.filter((n) => n.kind === kind);
          if (wanted.length > 0) {
            items = [];
            for (const w of wanted) {
              const o = await store.get(kind, ns, w.name);
              if (o) items.push(o);
              else {
                io.err(notFound(kind, w.name));
                code = 1;
              }
            }
          } else {
            const res = await store.list(kind, ns);
            for (const bad of res.invalid) io.err(`warning: skipping the invalid value at ${bad.key}: ${bad.reason}\n`);
            items = selector ? res.items.filter((i) => selectorMatches(selector, i.metadata.labels)) : res.items;
          }
          sections.push({ kind, items });
        }
      });
      const everything = sections.flatMap((s) => s.items);
      if (output === "yaml" || output === "json") {
        if (everything.length > 0 || names.length === 0) io.out(renderObjects(everything, output, names.length === 1 && kinds.length === 1));
        return code;
      }
      if (output === "name") {
        for (const s of sections) io.out(renderNames(s.kind, s.items));
        return code;
      }
      if (everything.length === 0) {
        if (names.length === 0) io.err(all || kinds.every((k) => !k.namespaced) ? "No resources found\n" : `No resources found in ${namespace} namespace.\n`);
        return code;
      }
      const now = Date.now();
      const tables = sections.filter((s) => s.items.length > 0).map((s) => renderTable(s.kind, s.items, { allNamespaces: all, wide: output === "wide", withKind: kinds.length > 1, now }));
      io.out(tables.join("\n"));
      return code;
    },
  },
  delete: {
    summary: "delete objects like kubectl delete: sluicectl delete netpol NAME [-n ns], delete -f FILE, delete netpol --all -n ns",
    flags: [
      ...RESOURCE_ETCD_FLAGS,
      { name: "f", kind: "list", help: "delete the objects a file (directory, - for stdin) describes" },
      ...NAMESPACE_FLAGS,
      { name: "all", kind: "boolean", help: "delete every object of the type (in the namespace)" },
      { name: "ignore-not-found", kind: "boolean", help: "an absent object is not an error" },
      { name: "max-txn-ops", kind: "string", help: "most objects one etcd transaction may delete (etcd's --max-txn-ops); more go in several", default: String(DEFAULT_MAX_TXN_OPS) },
    ],
    run: async (flags, args, io) => {
      const cmd = "sluicectl delete";
      const namespace = namespaceFlag(flags, cmd);
      const files = list(flags, "f");
      const ignoreMissing = flags["ignore-not-found"] === true;
      let refs: ObjectRef[];
      if (files.length > 0) {
        if (args.length > 0) throw new ConfigError(args[0] as string, "unexpected argument with -f", cmd);
        const parsed = parseManifests(readSources(files, cmd), { namespace, validate: false });
        if (parsed.problems.length > 0) {
          for (const p of parsed.problems) io.err(formatProblem(p) + "\n");
          io.err("error: nothing was deleted\n");
          return 1;
        }
        refs = parsed.objects.map((o) => ({ kind: o.kind, namespace: o.namespace, name: o.name }));
      } else {
        const { kinds, names } = parseTargets(args, cmd);
        const ns = namespace ?? "default";
        if (flags["all"] === true) {
          if (names.length > 0) throw new ConfigError("--all", "cannot be combined with names", cmd);
          refs = [];
          await withStore(flags, async (store) => {
            for (const kind of kinds) for (const o of (await store.list(kind, kind.namespaced ? ns : undefined)).items) refs.push({ kind, namespace: o.metadata.namespace, name: o.metadata.name });
          });
          if (refs.length === 0) {
            io.err(kinds.every((k) => !k.namespaced) ? "No resources found\n" : `No resources found in ${ns} namespace.\n`);
            return 0;
          }
        } else {
          if (names.length === 0) throw new ConfigError("NAME", "is required (or pass --all, or -f FILE)", cmd);
          refs = names.map((n) => ({ kind: n.kind, namespace: n.kind.namespaced ? ns : undefined, name: n.name }));
        }
      }
      let existed: boolean[];
      try {
        existed = await withStore(flags, (store) => store.deleteInBatches(refs));
      } catch (err) {
        if (err instanceof BatchWriteError) {
          io.err(`error: ${err.message}\n`);
          return 1;
        }
        throw err;
      }
      let code = 0;
      refs.forEach((r, i) => {
        if (existed[i]) io.out(`${qualifiedSingular(r.kind)} "${r.name}" deleted\n`);
        else if (!ignoreMissing) {
          io.err(notFound(r.kind, r.name));
          code = 1;
        }
      });
      return code;
    },
  },
};
