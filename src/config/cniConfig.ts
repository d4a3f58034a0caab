/**
 * The network configuration the container runtime hands sluice-cni on stdin (one
 * plugin's entry of a conflist, with name/cniVersion injected as libcni does), validated
 * with zod. zod/mini keeps the plugin's start-up fast; the messages name the field.
 */
import { hostname } from "node:os";
import * as z from "zod/mini";
import { ConfigError } from "./errors.js";

/** What sluice-cni speaks, oldest first. 0.3.x results have the 0.4.0 shape. */
export const SUPPORTED_CNI_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_CNI_VERSIONS)[number];
export const LATEST_CNI_VERSION: CniVersion = "1.1.0";

export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";
/** ADD must not hold the runtime for long: the kubelet's own CNI timeout is minutes, ours at most 2. */
export const MAX_POLICY_READY_TIMEOUT_MS = 120_000;
export const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const;
export type CniLogLevel = (typeof LOG_LEVELS)[number];

/** Names that end up in file names, interface aliases and etcd keys (the spec's rule for container IDs). */
const SAFE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
/**
 * Keys of the plugin that wrote workload endpoints to etcd itself. Accepted (so that a
 * node's conflist written for it keeps working), ignored and warned about: the agent
 * publishes the pods now, with its own credentials.
 */
export const RETIRED_KEYS = ["etcdEndpoints", "etcdPrefix"] as const;

const absolutePath = z.string().check(z.refine((s) => s.startsWith("/"), { message: "must be an absolute path" }));

const schema = z.looseObject({
  cniVersion: z.string(),
  name: z.string().check(z.refine((s) => SAFE_NAME.test(s), { message: "must start with a letter or digit and contain only letters, digits, '_', '.' and '-'" })),
  type: z.string().check(z.refine((s) => s === "sluice" || s === "sluice-cni", { message: 'must be "sluice" (or "sluice-cni")' })),
  subnetFile: z._default(absolutePath, DEFAULT_SUBNET_FILE),
  dataDir: z._default(absolutePath, DEFAULT_DATA_DIR),
  nodeName: z.optional(z.string().check(z.refine((s) => SAFE_NAME.test(s), { message: "must be a node name (letters, digits, '_', '.', '-')" }))),
  mtu: z.optional(z.number().check(z.int(), z.minimum(68), z.maximum(65535))),
  logLevel: z._default(z.enum(LOG_LEVELS), "warn"),
  policyReadyTimeoutMs: z._default(z.number().check(z.int(), z.minimum(0), z.maximum(MAX_POLICY_READY_TIMEOUT_MS)), 0),
  runtimeConfig: z.optional(z.record(z.string(), z.unknown())),
  capabilities: z.optional(z.record(z.string(), z.boolean())),
  args: z.optional(z.record(z.string(), z.unknown())),
  prevResult: z.optional(z.record(z.string(), z.unknown())),
});

export interface CniNetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  subnetFile: string;
  dataDir: string;
  nodeName: string;
  mtu: number | undefined;
  /** RETIRED_KEYS the config still has (ignored; the plugin warns). */
  retiredKeys: string[];
  logLevel: CniLogLevel;
  /**
   * > 0: ADD returns only once the node's agent has applied the new pod's policy chains
   * with its addresses (the agent's ready mark), waiting at most this long; on timeout
   * ADD fails and undoes everything (fail closed). 0: no wait.
   */
  policyReadyTimeoutMs: number;
  runtimeConfig: Record<string, unknown> | undefined;
  capabilities: Record<string, boolean> | undefined;
  args: Record<string, unknown> | undefined;
  prevResult: Record<string, unknown> | undefined;
  /** Everything the runtime sent, as sent (GC reads cni.dev/valid-attachments from it). */
  raw: Record<string, unknown>;
}

export const NETCONF_SOURCE = "network config";

interface Issue {
  code: string;
  path: PropertyKey[];
  message: string;
  expected?: unknown;
  values?: unknown[];
  minimum?: unknown;
  maximum?: unknown;
  origin?: unknown;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** zod/mini carries no message texts; say what was expected in plain words. */
function reasonOf(issue: Issue, input: unknown): string {
  const got = valueAt(input, issue.path);
  switch (issue.code) {
    case "invalid_type":
      if (got === undefined) return `is required (expected ${String(issue.expected)})`;
      return issue.expected === "int" ? "expected an integer" : `expected ${String(issue.expected)}, got ${typeName(got)}`;
    case "invalid_value":
      return `must be one of ${(issue.values ?? []).map((v) => JSON.stringify(v)).join(", ")}`;
    case "too_small":
      return `must be at least ${String(issue.minimum)}`;
    case "too_big":
      return `must be at most ${String(issue.maximum)}`;
    case "invalid_union":
      return `has the wrong type (${typeName(got)})`;
    default:
      return issue.message === "Invalid input" ? "is invalid" : issue.message;
  }
}

/** The cniVersion alone, so a version we do not speak is reported as such (code 1) before anything else. */
export function isSupportedCniVersion(v: unknown): v is CniVersion {
  return typeof v === "string" && (SUPPORTED_CNI_VERSIONS as readonly string[]).includes(v);
}

/**
 * Validates a parsed network config. Throws ConfigError (source "network config") naming
 * the first bad field; fills in defaults (nodeName: env NODE_NAME, then the host name).
 */
export function parseCniNetConf(input: unknown, env: NodeJS.ProcessEnv = process.env): CniNetConf {
  const r = schema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0] as unknown as Issue;
    const path = issue.path.filter((p) => typeof p !== "number").map(String);
    throw new ConfigError(path.length ? path.join(".") : "(root)", path.length ? reasonOf(issue, input) : `expected a JSON object, got ${typeName(input)}`, NETCONF_SOURCE);
  }
  const d = r.data;
  if (!isSupportedCniVersion(d.cniVersion)) throw new ConfigError("cniVersion", `"${d.cniVersion}" is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(", ")})`, NETCONF_SOURCE);
  const nodeName = d.nodeName ?? (env["NODE_NAME"] || hostname());
  return {
    cniVersion: d.cniVersion,
    name: d.name,
    type: d.type,
    subnetFile: d.subnetFile,
    dataDir: d.dataDir,
    nodeName,
    mtu: d.mtu,
    retiredKeys: RETIRED_KEYS.filter((k) => k in d),
    logLevel: d.logLevel,
    policyReadyTimeoutMs: d.policyReadyTimeoutMs,
    runtimeConfig: d.runtimeConfig,
    capabilities: d.capabilities,
    args: d.args,
    prevResult: d.prevResult,
    raw: input as Record<string, unknown>,
  };
}
