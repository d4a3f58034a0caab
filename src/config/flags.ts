/**
 * A small flag parser with flanneld's conventions: `--name value`, `--name=value`,
 * single-dash forms, booleans as `--flag` or `--flag=false`, repeatable flags, and
 * environment fallbacks (`SLUICE_<NAME>` first, then flannel's `FLANNELD_<NAME>`) for
 * flags not given on the command line.
 */
import { ConfigError } from "./errors.js";

export interface FlagSpec {
  name: string;
  kind: "string" | "boolean" | "list";
  help: string;
  /** Default as text (for help output); the zod schema owns the real default. */
  default?: string;
}

export type RawFlags = Record<string, string | boolean | string[]>;

export function envNames(flag: string): string[] {
  const suffix = flag.toUpperCase().replace(/[-.]/g, "_");
  return [`SLUICE_${suffix}`, `FLANNELD_${suffix}`];
}

export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[], env: NodeJS.ProcessEnv, source = "flags"): { flags: RawFlags; positional: string[] } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const flags: RawFlags = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positional.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const spec = byName.get(name);
    if (!spec) throw new ConfigError(`--${name}`, "is not a known flag (see --help)", source);
    let value: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    if (spec.kind === "boolean") {
      if (value === undefined) flags[name] = true;
      else flags[name] = parseBool(value, `--${name}`, source);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new ConfigError(`--${name}`, "needs a value", source);
    }
    if (spec.kind === "list") {
      const prev = flags[name];
      flags[name] = [...(Array.isArray(prev) ? prev : []), value];
    } else {
      flags[name] = value;
    }
  }
  for (const spec of specs) {
    if (spec.name in flags) continue;
    for (const envName of envNames(spec.name)) {
      const v = env[envName];
      if (v === undefined || v === "") continue;
      flags[spec.name] = spec.kind === "boolean" ? parseBool(v, envName, source) : spec.kind === "list" ? [v] : v;
      break;
    }
  }
  return { flags, positional };
}

function parseBool(v: string, field: string, source: string): boolean {
  const t = v.toLowerCase();
  if (["true", "1", "t", "yes"].includes(t)) return true;
  if (["false", "0", "f", "no"].includes(t)) return false;
  throw new ConfigError(field, `"${v}" is not a boolean (true or false)`, source);
}

export function formatHelp(title: string, specs: readonly FlagSpec[]): string {
  const lines = [title, "", "Flags (each also settable as SLUICE_<NAME> or FLANNELD_<NAME>):"];
  for (const s of specs) {
    const def = s.default !== undefined ? ` (default ${s.default})` : "";
    const rep = s.kind === "list" ? " (repeatable)" : "";
    lines.push(`  --${s.name}${s.kind === "boolean" ? "" : " value"}${rep}\n      ${s.help}${def}`);
  }
  return lines.join("\n");
}

/** Parses "90s", "5m", "24h", "250ms"; a bare integer is taken in `bareUnit`. */
export function parseDuration(text: string, bareUnitMs: number): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2];
  const ms = unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : unit === "h" ? 3_600_000 : bareUnitMs;
  return Math.round(n * ms);
}
