/**
 * Connecting to the Kubernetes API with @kubernetes/client-node: which KubeConfig
 * (`--kubeconfig-file`, else `--kube-api-url`, else the pod's service account, as
 * flannel's kube subnet manager), and a raw JSON GET that carries the same credentials.
 *
 * The client library (2.x) is an ES module only; this CommonJS build loads it with import()
 * (loadK8s) and names its types with `resolution-mode: "import"`.
 */
import { existsSync, readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { isIPv6 } from "node:net";
import { join } from "node:path";
import type { Agent } from "node:http";
import type { KubeConfig } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { ConfigError } from "../config/errors.js";

export type K8s = typeof import("@kubernetes/client-node", { with: { "resolution-mode": "import" } });

let loaded: Promise<K8s> | undefined;

/** The client library (loaded once). */
export function loadK8s(): Promise<K8s> {
  loaded ??= import("@kubernetes/client-node");
  return loaded;
}

/** Where a pod's service account token, CA and namespace are mounted. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface KubeConnectOptions {
  /** --kubeconfig-file */
  kubeconfigFile?: string | undefined;
  /** --kube-api-url: overrides the kubeconfig's server, or is used with the service account's credentials (if any). */
  apiUrl?: string | undefined;
  /** Default process.env (KUBERNETES_SERVICE_HOST/PORT for the in-cluster config). */
  env?: NodeJS.ProcessEnv;
  /** Default SERVICE_ACCOUNT_DIR. */
  serviceAccountDir?: string;
}

const SOURCE = "sluice-agent";

/**
 * Builds the KubeConfig the agent uses; throws a ConfigError naming the flag when it
 * cannot: a missing or unreadable kubeconfig, a bad URL, or no flag outside a pod.
 */
export async function kubeConfigFrom(o: KubeConnectOptions): Promise<KubeConfig> {
  const k8s = await loadK8s();
  const kc = new k8s.KubeConfig();
  const env = o.env ?? process.env;
  const saDir = o.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const url = o.apiUrl !== undefined && o.apiUrl !== "" ? parseApiUrl(o.apiUrl) : undefined;
  const tokenFile = join(saDir, "token");
  const caFile = join(saDir, "ca.crt");
  const inPod = existsSync(tokenFile);

  if (o.kubeconfigFile) {
    let text: string;
    try {
      text = readFileSync(o.kubeconfigFile, "utf8");
    } catch (err) {
      throw new ConfigError("--kubeconfig-file", `cannot read ${o.kubeconfigFile}: ${(err as Error).message}`, SOURCE);
    }
    try {
      kc.loadFromString(text);
    } catch (err) {
      throw new ConfigError("--kubeconfig-file", `${o.kubeconfigFile} is not a valid kubeconfig: ${(err as Error).message}`, SOURCE);
    }
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new ConfigError("--kubeconfig-file", `${o.kubeconfigFile} has no current-context naming a cluster`, SOURCE);
    if (url) {
      // As flannel (clientcmd.BuildConfigFromFlags): --kube-api-url overrides the kubeconfig's server.
      kc.loadFromOptions({
        clusters: kc.clusters.map((c) => (c.name === cluster.name ? { ...c, server: url.href.replace(/\/$/, ""), skipTLSVerify: c.skipTLSVerify || url.protocol === "http:" } : c)),
        contexts: kc.contexts,
        users: kc.users,
        currentContext: kc.currentContext,
      });
    }
    return kc;
  }

  if (url) {
    kc.loadFromClusterAndUser(
      // The client refuses plain HTTP unless TLS verification is off (there is no TLS to verify).
      { name: "sluice", server: url.href.replace(/\/$/, ""), skipTLSVerify: url.protocol === "http:", ...(url.protocol === "https:" && existsSync(caFile) ? { caFile } : {}) },
      inPod ? { name: "sluice", authProvider: { name: "tokenFile", config: { tokenFile } } } : { name: "sluice" },
    );
    return kc;
  }

  const host = env["KUBERNETES_SERVICE_HOST"];
  const port = env["KUBERNETES_SERVICE_PORT"];
  if (!host || !port || !inPod) {
    const missing = [!host ? "KUBERNETES_SERVICE_HOST is not set" : "", !port ? "KUBERNETES_SERVICE_PORT is not set" : "", !inPod ? `no service account token at ${tokenFile}` : ""].filter(Boolean).join(", ");
    throw new ConfigError("--kubeconfig-file", `not given, and not running in a pod (${missing}): give --kubeconfig-file or --kube-api-url`, SOURCE);
  }
  // The in-cluster config, as KubeConfig.loadFromCluster builds it (with our env and paths).
  const scheme = port === "80" || port === "8080" || port === "8001" ? "http" : "https";
  kc.loadFromClusterAndUser(
    { name: "inCluster", server: `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`, caFile, skipTLSVerify: false },
    { name: "inClusterUser", authProvider: { name: "tokenFile", config: { tokenFile } } },
  );
  return kc;
}

function parseApiUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError("--kube-api-url", `"${text}" is not a URL (expected e.g. https://10.96.0.1:443)`, SOURCE);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ConfigError("--kube-api-url", `must be an http:// or https:// URL, got ${text}`, SOURCE);
  return url;
}

/** A non-2xx answer of the API server; `statusCode` as the client library's errors carry it. */
export class KubeHttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = "KubeHttpError";
  }
}

/** The URL path of a collection: /api/v1/pods, /apis/networking.k8s.io/v1/networkpolicies. */
export function collectionPath(r: { group: string; version: string; plural: string }): string {
  return r.group ? `/apis/${r.group}/${r.version}/${r.plural}` : `/api/${r.version}/${r.plural}`;
}

/**
 * GET `path` (with `query`) from the current cluster with the kubeconfig's credentials and
 * TLS settings, and parse the JSON as it is: no typed-model conversion, so lists and watch
 * events carry objects of the same shape. Rejects with KubeHttpError on a non-2xx status.
 */
export async function kubeGetJson(kc: KubeConfig, path: string, query: Record<string, string> = {}, timeoutMs = 30_000): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const url = new URL(cluster.server.replace(/\/$/, "") + path);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const opts: RequestOptions & { agent?: Agent } = { headers: {} };
  await kc.applyToHTTPSOptions(opts);
  const headers: Record<string, string> = { Accept: "application/json" };
  for (const [k, v] of Object.entries(opts.headers ?? {})) if (v !== undefined) headers[k] = String(v);
  if (opts.auth) headers["Authorization"] = `Basic ${Buffer.from(opts.auth).toString("base64")}`;
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return await new Promise((resolve, reject) => {
    const req = send(url, { method: "GET", headers, agent: opts.agent, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const code = res.statusCode ?? 0;
        if (code >= 200 && code < 300 && body !== undefined) return resolve(body);
        const status = body as { message?: unknown; reason?: unknown } | undefined;
        const message = typeof status?.message === "string" ? status.message : text.slice(0, 200) || `HTTP ${code}`;
        reject(new KubeHttpError(code, typeof status?.reason === "string" ? status.reason : undefined, `GET ${path}: ${code} ${message}`));
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path}: no answer within ${timeoutMs}ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** A short text for logs: the API status and message, or the network error. */
export function describeKubeError(err: unknown): string {
  if (err === null || err === undefined) return "unknown error";
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown; errno?: unknown };
  const body = typeof e.body === "string" ? tryJson(e.body) : e.body;
  const bodyMessage = body && typeof body === "object" && typeof (body as { message?: unknown }).message === "string" ? (body as { message: string }).message : undefined;
  const code = typeof e.statusCode === "number" ? e.statusCode : typeof e.code === "number" ? e.code : undefined;
  const message = bodyMessage ?? (typeof e.message === "string" ? e.message : String(err));
  return code !== undefined ? `HTTP ${code}: ${message}` : message;
}

/** The HTTP status of a client library or KubeHttpError failure, if it has one. */
export function kubeErrorStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null | undefined;
  if (typeof e?.statusCode === "number") return e.statusCode;
  if (typeof e?.code === "number") return e.code;
  return undefined;
}

function tryJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
