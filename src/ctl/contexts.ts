/**
 * sluicectl's contexts: named etcd connections in one small file, and which one is
 * current, as kubectl has with kubeconfig. `sandbox up` and `demo --keep` record the
 * sandbox's etcd (endpoint and client certificate) as the current context and
 * `sandbox down` removes it, so `apply`, `get`, `explain`, `leases` ... find a running
 * sandbox without flags. A datastore flag given on the command line or in the
 * environment (SLUICE_ETCD_ENDPOINTS, FLANNELD_ETCD_ENDPOINTS) always wins.
 *
 * The file: $SLUICE_CONFIG, else $XDG_CONFIG_HOME/sluice/config.json, else
 * ~/.config/sluice/config.json; written atomically, mode 0600 (it names key files).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";
import { ConfigError } from "../config/errors.js";
import type { RawFlags } from "../config/flags.js";

const contextSchema = z
  .object({
    name: z.string().min(1),
    etcdEndpoints: z.string().min(1),
    etcdCafile: z.string().optional(),
    etcdCertfile: z.string().optional(),
    etcdKeyfile: z.string().optional(),
    /** What made it: a sandbox's state directory (sandbox down removes the contexts of its directory). */
    sandboxStateDir: z.string().optional(),
  })
  .strict();
export type EtcdContext = z.infer<typeof contextSchema>;

const fileSchema = z.object({ currentContext: z.string().optional(), contexts: z.array(contextSchema) }).strict();
type ContextFile = z.infer<typeof fileSchema>;

/** Where the contexts live for this environment. */
export function contextsPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env["SLUICE_CONFIG"]) return env["SLUICE_CONFIG"];
  const base = env["XDG_CONFIG_HOME"] || join(env["HOME"] || homedir(), ".config");
  return join(base, "sluice", "config.json");
}

export function readContexts(path: string): ContextFile {
  if (!existsSync(path)) return { contexts: [] };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError(path, `is not valid JSON (${(err as Error).message}); fix or remove it`, "sluicectl contexts");
  }
  const r = fileSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ConfigError(`${path}: ${issue?.path.join(".") || "(top level)"}`, `${issue?.message ?? "invalid"}; fix or remove the file`, "sluicectl contexts");
  }
  return r.data;
}

function writeContexts(path: string, f: ContextFile): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(f, null, 2) + "\n", { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** Adds or replaces the context of that name and makes it current. */
export function recordContext(path: string, ctx: EtcdContext): void {
  const f = readContexts(path);
  writeContexts(path, { currentContext: ctx.name, contexts: [...f.contexts.filter((c) => c.name !== ctx.name), contextSchema.parse(ctx)] });
}

/** Removes the contexts `which` picks; the current one, when removed, leaves none current. Returns the names removed. */
export function removeContexts(path: string, which: (c: EtcdContext) => boolean): string[] {
  if (!existsSync(path)) return [];
  const f = readContexts(path);
  const gone = f.contexts.filter(which).map((c) => c.name);
  if (gone.length === 0) return [];
  const current = f.currentContext !== undefined && gone.includes(f.currentContext) ? undefined : f.currentContext;
  writeContexts(path, { ...(current !== undefined ? { currentContext: current } : {}), contexts: f.contexts.filter((c) => !which(c)) });
  return gone;
}

export function useContext(path: string, name: string): void {
  const f = readContexts(path);
  if (!f.contexts.some((c) => c.name === name)) throw new ConfigError("NAME", `no context "${name}" in ${path} (have: ${f.contexts.map((c) => c.name).join(", ") || "none"})`, "sluicectl config use-context");
  writeContexts(path, { ...f, currentContext: name });
}

export function currentContext(path: string): EtcdContext | undefined {
  const f = readContexts(path);
  return f.contexts.find((c) => c.name === f.currentContext);
}

const FLAG_OF: ReadonlyArray<[keyof EtcdContext, string]> = [
  ["etcdEndpoints", "etcd-endpoints"],
  ["etcdCafile", "etcd-cafile"],
  ["etcdCertfile", "etcd-certfile"],
  ["etcdKeyfile", "etcd-keyfile"],
];

/**
 * The flags a datastore command runs with: as given when any etcd connection flag was
 * given (flag or environment: mixing a context's certificate with another endpoint would
 * be wrong), else the current context's, else as given (the built-in default endpoint).
 * `used` names the context taken, for the stderr notice.
 */
export function withCurrentContext(flags: RawFlags, path: string): { flags: RawFlags; used: EtcdContext | undefined } {
  if (FLAG_OF.some(([, flag]) => flags[flag] !== undefined)) return { flags, used: undefined };
  const ctx = currentContext(path);
  if (!ctx) return { flags, used: undefined };
  const out: RawFlags = { ...flags };
  for (const [key, flag] of FLAG_OF) {
    const v = ctx[key];
    if (typeof v === "string") out[flag] = v;
  }
  return { flags: out, used: ctx };
}
