/**
 * An in-test Kubernetes API server: plain HTTP on loopback (or any address), objects kept in
 * memory, speaking the parts of the real protocol that @kubernetes/client-node and our
 * datastore rely on, so tests exercise the real client library end to end:
 *
 * - GET list (cluster-wide and namespaced paths; `kind: XList`, `metadata.resourceVersion`;
 *   items of built-in types without apiVersion/kind, as the real server sends them; CRD items
 *   with them), labelSelector and fieldSelector (equality and set-based).
 * - `?watch=true&resourceVersion=N` (and the legacy /watch/ paths): a chunked stream of JSON
 *   lines `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}`. No or "0"
 *   resourceVersion starts with synthetic ADDED events for what exists; N replays every
 *   change after N. N older than the compaction point gets, like the watch cache, HTTP 200
 *   and an ERROR event carrying a Status 410 Expired (`goneAsHttpStatus` sends a plain 410
 *   response instead, as a watch served from etcd does). Objects that start or stop matching
 *   a selector arrive as ADDED/DELETED. BOOKMARKs with allowWatchBookmarks=true.
 *   timeoutSeconds closes the stream.
 * - GET one, POST, PUT, DELETE (resourceVersion preconditions -> 409 Conflict), and PATCH as
 *   application/merge-patch+json, application/strategic-merge-patch+json (maps merge; lists
 *   with the merge keys Kubernetes declares for the fields we use, e.g. status.conditions by
 *   type) and application/json-patch+json. For kinds with a status subresource (nodes, pods,
 *   namespaces) writes to the main resource keep the stored status, and writes to `/status`
 *   never change the spec (built-in kinds take the metadata from them too, as the real
 *   nodes/status does: flannel publishes its node annotations that way). A write that
 *   changes nothing keeps the resourceVersion and sends no event. One resourceVersion
 *   counter for every kind (etcd's revision).
 * - Errors as Status objects (NotFound, AlreadyExists, Conflict, BadRequest, Expired).
 *
 * Test controls (FakeKubeApi methods): put/remove/get objects directly, compact (watches or
 * relists from older versions get 410), expireWatches (every open watch gets ERROR 410),
 * failLists (lists of one resource answer an error status, e.g. the 404 of a proxy in front
 * of a server that still serves it; discovery is unchanged), uninstall/install (the
 * resource stops being served, as when its CRD is deleted: discovery drops it, its objects
 * go, its paths answer 404),
 * closeWatches (clean end, as a server-side timeout), outage (stops listening and drops every
 * connection: clients see ECONNREFUSED) and recover (listens again on the same port), and a
 * request log.
 *
 * Also startable as a child process (fakeKubeApiMain.ts, optionally inside a network
 * namespace) and driven over the IPC channel: see FakeKubeApiProcess.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { Socket } from "node:net";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { KINDS, type ResourceKind } from "../../src/config/resourceKinds.js";
import { parseSelectorText, selectorMatches } from "../../src/ctl/apply.js";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** A stored object: anything with apiVersion, kind and metadata.name. */
export interface FakeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

/** Names one object (or, without name, a collection) for the controls. */
export interface FakeRef {
  apiVersion: string;
  kind: string;
  namespace?: string | undefined;
  name: string;
}

export interface ResourceType {
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
  /** Built-in types' list items carry no apiVersion/kind (the real server strips them); CRD items do. */
  builtin: boolean;
  /** Has a /status subresource. */
  status: boolean;
}

/** The built-in types the server always serves (KINDS entries are added to these). */
export const BUILTIN_RESOURCES: readonly ResourceType[] = [
  { group: "", version: "v1", kind: "Node", plural: "nodes", namespaced: false, builtin: true, status: true },
  { group: "", version: "v1", kind: "Pod", plural: "pods", namespaced: true, builtin: true, status: true },
  { group: "", version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false, builtin: true, status: true },
  { group: "networking.k8s.io", version: "v1", kind: "NetworkPolicy", plural: "networkpolicies", namespaced: true, builtin: true, status: false },
];

export interface RequestLogEntry {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  /** The parsed JSON body of a write, if any. */
  body: unknown;
  status: number;
  watch: boolean;
  /** Date.now() when the request arrived. */
  at: number;
  /** The client's address (which node asked). */
  remote: string;
}

export interface FakeKubeApiOptions {
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Kinds served besides the built-in ones; default KINDS (every registry kind). */
  kinds?: readonly ResourceKind[];
  /** Extra resource types. */
  resources?: readonly ResourceType[];
  /** Interval of BOOKMARK events on watches that allow them; default 60 s (as the real server, roughly). */
  bookmarkIntervalMs?: number;
  /** Send a too-old watch a plain HTTP 410 instead of HTTP 200 + an ERROR event. */
  goneAsHttpStatus?: boolean;
  /** Events kept for watches (the watch cache's capacity); older ones are compacted away. Default 10000. */
  historyLimit?: number;
}

interface StoredEvent {
  rv: number;
  type: "ADDED" | "MODIFIED" | "DELETED";
  res: ResourceType;
  object: FakeObject;
  /** The version before a MODIFIED (for selector transitions). */
  previous: FakeObject | undefined;
}

interface Watcher {
  res: ResourceType;
  namespace: string | undefined;
  labelSelector: LabelRequirement[];
  fieldSelector: FieldRequirement[];
  response: ServerResponse;
  timers: NodeJS.Timeout[];
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: JsonObject,
  ) {
    super(message);
  }
}

const apiVersionOfRes = (r: { group: string; version: string }): string => (r.group ? `${r.group}/${r.version}` : r.version);
const clone = <T>(v: T): T => structuredClone(v);

export class FakeKubeApi {
  private readonly resources: ResourceType[];
  private readonly store = new Map<ResourceType, Map<string, FakeObject>>();
  private readonly history: StoredEvent[] = [];
  private rv = 1000;
  private compactedRv = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private readonly log: RequestLogEntry[] = [];
  private server: Server | undefined;
  private down = false;
  /** Status answered to lists of a resource instead of the list (failLists). */
  private readonly listFailures = new Map<ResourceType, number>();
  /** Resources not served at the moment (uninstall). */
  private readonly unserved = new Set<ResourceType>();
  private readonly bookmarkIntervalMs: number;
  private readonly goneAsHttpStatus: boolean;
  private readonly historyLimit: number;

  private constructor(
    readonly host: string,
    public port: number,
    o: FakeKubeApiOptions,
  ) {
    const all = [...BUILTIN_RESOURCES, ...(o.resources ?? [])];
    for (const k of o.kinds ?? KINDS) {
      if (all.some((r) => r.group === k.group && r.version === k.version && r.plural === k.plural)) continue;
      all.push({ group: k.group, version: k.version, kind: k.kind, plural: k.plural, namespaced: k.namespaced, builtin: false, status: false });
    }
    this.resources = all;
    for (const r of all) this.store.set(r, new Map());
    this.bookmarkIntervalMs = o.bookmarkIntervalMs ?? 60_000;
    this.goneAsHttpStatus = o.goneAsHttpStatus ?? false;
    this.historyLimit = o.historyLimit ?? 10_000;
  }

  static async start(o: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
    const api = new FakeKubeApi(o.host ?? "127.0.0.1", o.port ?? 0, o);
    await api.listen();
    return api;
  }

  /** The server URL (http://host:port), for a kubeconfig or --kube-api-url. */
  get url(): string {
    return `http://${this.host.includes(":") ? `[${this.host}]` : this.host}:${this.port}`;
  }

  /** A kubeconfig for this server (plain HTTP, so insecure-skip-tls-verify as the client requires). */
  kubeconfig(): string {
    return [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: fake",
      "  cluster:",
      `    server: ${this.url}`,
      "    insecure-skip-tls-verify: true",
      "users:",
      "- name: fake",
      "  user:",
      "    token: fake-token",
      "contexts:",
      "- name: fake",
      "  context:",
      "    cluster: fake",
      "    user: fake",
      "current-context: fake",
      "",
    ].join("\n");
  }

  /** The current resourceVersion (of the last write). */
  get resourceVersion(): string {
    return String(this.rv);
  }

  // ------------------------------------------------------------------ controls

  /**
   * Creates or replaces an object as given, status included (as if its owner and the
   * kubelet or controller had written it): fresh uid and creationTimestamp on create, kept
   * on replace, a new resourceVersion when it changed. No validation: tests may store what a
   * real server would refuse. Returns the stored object.
   */
  put(object: FakeObject): FakeObject {
    const res = this.resourceOf(object.apiVersion, object.kind);
    const ns = this.namespaceFor(res, object.metadata.namespace);
    const metadata = { ...object.metadata };
    delete metadata["resourceVersion"]; // no precondition: the control always writes
    return this.write(res, ns, object.metadata.name, clone({ ...object, metadata }), "replace", "all");
  }

  /** Deletes an object; returns whether it existed. */
  remove(ref: FakeRef): boolean {
    const res = this.resourceOf(ref.apiVersion, ref.kind);
    const ns = this.namespaceFor(res, ref.namespace);
    return this.deleteObject(res, ns, ref.name) !== undefined;
  }

  get(ref: FakeRef): FakeObject | undefined {
    const res = this.resourceOf(ref.apiVersion, ref.kind);
    const o = this.store.get(res)?.get(keyOf(this.namespaceFor(res, ref.namespace), ref.name));
    return o && clone(o);
  }

  /** Every object of a kind (sorted by namespace/name). */
  list(apiVersion: string, kind: string): FakeObject[] {
    const res = this.resourceOf(apiVersion, kind);
    return this.sorted(res).map((o) => clone(o));
  }

  /**
   * Forgets the change history up to now: a watch or reconnect from an older
   * resourceVersion gets 410 Gone (and the informer relists). Returns the compaction point.
   */
  compact(): string {
    this.compactedRv = this.rv;
    this.history.length = 0;
    return String(this.compactedRv);
  }

  /** Compacts, and ends every open watch with an ERROR event carrying 410 Expired. */
  expireWatches(): number {
    this.compact();
    const n = this.watchers.size;
    for (const w of [...this.watchers]) {
      this.send(w, { type: "ERROR", object: expiredStatus(this.compactedRv - 1, this.compactedRv) });
      this.endWatch(w);
    }
    return n;
  }

  /**
   * Lists (not watches, not discovery) of one resource answer `code` (404 NotFound by
   * default) until cleared with `code` 0. Returns how many resources fail their lists.
   */
  failLists(apiVersion: string, kind: string, code = 404): number {
    const res = this.resourceOf(apiVersion, kind);
    if (code === 0) this.listFailures.delete(res);
    else this.listFailures.set(res, code);
    return this.listFailures.size;
  }

  /**
   * The resource is no longer served, as when its CRD is deleted: its objects go (open
   * watches of it end first, without events), discovery stops listing it, and its paths
   * answer 404. `install` serves it again, empty.
   */
  uninstall(apiVersion: string, kind: string): void {
    const res = this.resourceOf(apiVersion, kind);
    this.unserved.add(res);
    for (const w of [...this.watchers]) if (w.res === res) this.endWatch(w);
    (this.store.get(res) as Map<string, FakeObject>).clear();
  }

  install(apiVersion: string, kind: string): void {
    this.unserved.delete(this.resourceOf(apiVersion, kind));
  }

  /** Ends every open watch cleanly (as the server's request timeout does); clients resume from their last resourceVersion. */
  closeWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) this.endWatch(w);
    return n;
  }

  /** Open watches, per "group/version/plural" ("v1/pods", "networking.k8s.io/v1/networkpolicies"). */
  watchCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const w of this.watchers) {
      const k = `${apiVersionOfRes(w.res)}/${w.res.plural}`;
      out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  }

  /** The API server goes away: it stops listening and drops every connection (open watches included). */
  async outage(): Promise<void> {
    if (this.down) return;
    this.down = true;
    for (const w of [...this.watchers]) this.endWatch(w);
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  /** Listens again on the same port. */
  async recover(): Promise<void> {
    if (!this.down) return;
    this.down = false;
    await this.listen();
  }

  get isDown(): boolean {
    return this.down;
  }

  /** The request log, oldest first (optionally only matching method and a path substring). */
  requests(filter: { method?: string; path?: string } = {}): RequestLogEntry[] {
    return this.log.filter((e) => (filter.method === undefined || e.method === filter.method) && (filter.path === undefined || e.path.includes(filter.path))).map((e) => clone(e));
  }

  clearRequests(): void {
    this.log.length = 0;
  }

  async stop(): Promise<void> {
    await this.outage();
  }

  // ------------------------------------------------------------------ storage

  private resourceOf(apiVersion: string, kind: string): ResourceType {
    const r = this.resources.find((x) => x.kind === kind && apiVersionOfRes(x) === apiVersion);
    if (!r) throw new Error(`fake API server: no resource for ${apiVersion} ${kind}`);
    return r;
  }

  private namespaceFor(res: ResourceType, ns: string | undefined): string | undefined {
    if (!res.namespaced) return undefined;
    return ns ?? "default";
  }

  private sorted(res: ResourceType): FakeObject[] {
    const m = this.store.get(res) as Map<string, FakeObject>;
    return [...m.keys()].sort().map((k) => m.get(k) as FakeObject);
  }

  private nextRv(): string {
    this.rv += 1;
    return String(this.rv);
  }

  /**
   * Stores `object` under ns/name. `mode`: "create" fails if it exists, "update" if it does
   * not; "replace" does either. Keeps status/spec as the subresource rules say (`part`).
   */
  private write(res: ResourceType, ns: string | undefined, name: string, object: FakeObject, mode: "create" | "update" | "replace", part: "main" | "status" | "all" = "main"): FakeObject {
    const m = this.store.get(res) as Map<string, FakeObject>;
    const key = keyOf(ns, name);
    const old = m.get(key);
    if (mode === "create" && old) throw new HttpError(409, "AlreadyExists", `${res.plural} "${name}" already exists`, { name, kind: res.plural });
    if (mode === "update" && !old) throw new HttpError(404, "NotFound", `${res.plural} "${name}" not found`, { name, kind: res.plural });
    if (object.metadata?.name !== undefined && object.metadata.name !== name) throw new HttpError(400, "BadRequest", `the name of the object (${String(object.metadata.name)}) does not match the name on the URL (${name})`);
    const wantRv = object.metadata?.resourceVersion;
    if (mode !== "create" && old && typeof wantRv === "string" && wantRv !== "" && wantRv !== old.metadata["resourceVersion"]) {
      throw new HttpError(409, "Conflict", `Operation cannot be fulfilled on ${res.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: res.plural });
    }
    let next: FakeObject = { ...object, apiVersion: apiVersionOfRes(res), kind: res.kind, metadata: { ...(object.metadata ?? {}), name } };
    if (res.namespaced) next.metadata.namespace = ns as string;
    else delete next.metadata.namespace;
    if (old) {
      if (res.status && part === "main") next = withField(next, "status", old["status"]);
      // Built-in status strategies (nodes, pods, namespaces) keep only the old spec, so
      // metadata changes go through /status (flannel publishes its node annotations that
      // way); a CRD's status subresource takes nothing but the status.
      if (part === "status") next = res.builtin ? withField(next, "spec", old["spec"]) : { ...old, status: next["status"] as Json };
      next.metadata = { ...next.metadata, uid: old.metadata["uid"], creationTimestamp: old.metadata["creationTimestamp"], resourceVersion: old.metadata["resourceVersion"] };
      if (isDeepStrictEqual(next, old)) return clone(old);
    } else {
      next.metadata = { ...next.metadata, uid: randomUUID(), creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z") };
    }
    next.metadata.resourceVersion = this.nextRv();
    m.set(key, next);
    this.record({ rv: this.rv, type: old ? "MODIFIED" : "ADDED", res, object: next, previous: old });
    return clone(next);
  }

  private deleteObject(res: ResourceType, ns: string | undefined, name: string): FakeObject | undefined {
    const m = this.store.get(res) as Map<string, FakeObject>;
    const key = keyOf(ns, name);
    const old = m.get(key);
    if (!old) return undefined;
    m.delete(key);
    const gone: FakeObject = { ...old, metadata: { ...old.metadata, resourceVersion: this.nextRv() } };
    this.record({ rv: this.rv, type: "DELETED", res, object: gone, previous: old });
    return clone(gone);
  }

  private record(e: StoredEvent): void {
    this.history.push(e);
    if (this.history.length > this.historyLimit) {
      const dropped = this.history.splice(0, this.history.length - this.historyLimit);
      this.compactedRv = (dropped[dropped.length - 1] as StoredEvent).rv;
    }
    for (const w of this.watchers) if (w.res === e.res) this.deliver(w, e);
  }

  // ------------------------------------------------------------------ HTTP

  private async listen(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    for (let attempt = 0; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          server.listen(this.port, this.host, () => {
            server.off("error", reject);
            resolve();
          });
        });
        break;
      } catch (err) {
        // Listening again after an outage: the port may still be settling.
        if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const addr = server.address();
    if (typeof addr === "object" && addr) this.port = addr.port;
    this.server = server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake");
    const query = Object.fromEntries(url.searchParams);
    const entry: RequestLogEntry = { method: req.method ?? "GET", path: url.pathname, query, contentType: req.headers["content-type"], body: undefined, status: 0, watch: false, at: Date.now(), remote: req.socket.remoteAddress ?? "" };
    this.log.push(entry);
    try {
      const bodyText = await readBody(req);
      if (bodyText) {
        try {
          entry.body = JSON.parse(bodyText);
        } catch {
          entry.body = bodyText;
        }
      }
      this.route(req.method ?? "GET", url, query, entry, res);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, "InternalError", (err as Error).message);
      entry.status = e.code;
      if (!res.headersSent) sendJson(res, e.code, statusObject(e));
    }
  }

  private route(method: string, url: URL, query: Record<string, string>, entry: RequestLogEntry, res: ServerResponse): void {
    const segs = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (method === "GET" && (url.pathname === "/version" || url.pathname === "/healthz" || url.pathname === "/readyz" || url.pathname === "/livez")) {
      entry.status = 200;
      if (url.pathname === "/version") sendJson(res, 200, { major: "1", minor: "31", gitVersion: "v1.31.0-sluice-fake" });
      else {
        res.writeHead(200, { "Content-Type": "text/plain" });
        res.end("ok");
      }
      return;
    }
    const target = this.parsePath(segs);
    if (target === "discovery") {
      entry.status = 200;
      sendJson(res, 200, this.discovery(segs));
      return;
    }
    if (!target) throw new HttpError(404, "NotFound", "the server could not find the requested resource");
    const { res: rt, namespace, name, subresource } = target;
    const watch = target.watch || query["watch"] === "true" || query["watch"] === "1";
    entry.watch = watch;
    if (subresource !== undefined && (subresource !== "status" || !rt.status)) throw new HttpError(404, "NotFound", "the server could not find the requested resource");
    if (name === undefined) {
      if (method === "GET" && watch) {
        entry.status = this.startWatch(rt, namespace, query, res);
        return;
      }
      if (method === "GET") {
        const failure = this.listFailures.get(rt);
        if (failure !== undefined) throw failure === 404 ? new HttpError(404, "NotFound", "the server could not find the requested resource") : new HttpError(failure, "InternalError", `list of ${rt.plural} made to fail with ${failure}`);
        entry.status = 200;
        sendJson(res, 200, this.listResponse(rt, namespace, query));
        return;
      }
      if (method === "POST") {
        const body = asObject(entry.body);
        const meta = asObject(body["metadata"] ?? {});
        const n = typeof meta["name"] === "string" ? meta["name"] : undefined;
        if (!n) throw new HttpError(422, "Invalid", `${rt.kind} "" is invalid: metadata.name: Required value: name is required`);
        const ns = rt.namespaced ? (namespace ?? (typeof meta["namespace"] === "string" ? meta["namespace"] : "default")) : undefined;
        const created = this.write(rt, ns, n, body as unknown as FakeObject, "create");
        entry.status = 201;
        sendJson(res, 201, created);
        return;
      }
      throw new HttpError(405, "MethodNotAllowed", `the server does not allow this method on the requested resource`);
    }
    const ns = rt.namespaced ? namespace : undefined;
    if (rt.namespaced && ns === undefined) throw new HttpError(404, "NotFound", "the server could not find the requested resource");
    const m = this.store.get(rt) as Map<string, FakeObject>;
    const current = m.get(keyOf(ns, name));
    if (method === "GET") {
      if (!current) throw notFound(rt, name);
      entry.status = 200;
      sendJson(res, 200, current);
      return;
    }
    if (method === "DELETE") {
      const gone = this.deleteObject(rt, ns, name);
      if (!gone) throw notFound(rt, name);
      entry.status = 200;
      sendJson(res, 200, gone);
      return;
    }
    if (method === "PUT") {
      const body = asObject(entry.body) as unknown as FakeObject;
      const written = this.write(rt, ns, name, body, "update", subresource === "status" ? "status" : "main");
      entry.status = 200;
      sendJson(res, 200, written);
      return;
    }
    if (method === "PATCH") {
      if (!current) throw notFound(rt, name);
      const ct = (entry.contentType ?? "").split(";")[0]?.trim();
      const patched = applyPatch(ct, current, entry.body);
      const patchedMeta = asObject(patched["metadata"] ?? {});
      const patchRv = isRecord(entry.body) && isRecord(entry.body["metadata"]) ? entry.body["metadata"]["resourceVersion"] : undefined;
      // Only a resourceVersion the patch itself names is a precondition.
      const withRv: FakeObject = { ...(patched as unknown as FakeObject), metadata: { ...patchedMeta, name, resourceVersion: typeof patchRv === "string" ? patchRv : (current.metadata["resourceVersion"] as string) } };
      const written = this.write(rt, ns, name, withRv, "update", subresource === "status" ? "status" : "main");
      entry.status = 200;
      sendJson(res, 200, written);
      return;
    }
    throw new HttpError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }

  /** /api/v1/[namespaces/ns/]plural[/name[/status]], /apis/g/v/..., and the legacy /watch/ forms. */
  private parsePath(segs: string[]): { res: ResourceType; namespace: string | undefined; name: string | undefined; subresource: string | undefined; watch: boolean } | "discovery" | undefined {
    let group: string;
    let version: string;
    let rest: string[];
    if (segs[0] === "api") {
      if (segs.length <= 2) return "discovery";
      group = "";
      version = segs[1] as string;
      rest = segs.slice(2);
    } else if (segs[0] === "apis") {
      if (segs.length <= 3) return "discovery";
      group = segs[1] as string;
      version = segs[2] as string;
      rest = segs.slice(3);
    } else return undefined;
    let watch = false;
    if (rest[0] === "watch") {
      watch = true;
      rest = rest.slice(1);
    }
    const inGv = this.served().filter((r) => r.group === group && r.version === version);
    let namespace: string | undefined;
    if (rest[0] === "namespaces" && rest.length >= 3 && inGv.some((r) => r.namespaced && r.plural === rest[2])) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const res = inGv.find((r) => r.plural === rest[0]);
    if (!res || rest.length > 3) return undefined;
    return { res, namespace, name: rest[1], subresource: rest[2], watch };
  }

  /** The resources served now (every one but those uninstalled). */
  private served(): ResourceType[] {
    return this.resources.filter((r) => !this.unserved.has(r));
  }

  private discovery(segs: string[]): JsonObject {
    if (segs[0] === "api" && segs.length === 1) return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] };
    if (segs[0] === "apis" && segs.length === 1) {
      const groups = new Map<string, string[]>();
      for (const r of this.served()) if (r.group) groups.set(r.group, [...new Set([...(groups.get(r.group) ?? []), r.version])]);
      return { kind: "APIGroupList", apiVersion: "v1", groups: [...groups].map(([name, vs]) => ({ name, versions: vs.map((v) => ({ groupVersion: `${name}/${v}`, version: v })), preferredVersion: { groupVersion: `${name}/${vs[0]}`, version: vs[0] as string } })) };
    }
    const group = segs[0] === "api" ? "" : (segs[1] as string);
    const version = segs[0] === "api" ? (segs[1] as string) : (segs[2] as string);
    if (version === undefined) return { kind: "APIGroup", apiVersion: "v1", name: group };
    const inGv = this.served().filter((x) => x.group === group && x.version === version);
    // A group/version with nothing served is not there at all (as when its last CRD is deleted).
    if (inGv.length === 0) throw new HttpError(404, "NotFound", "the server could not find the requested resource");
    const resources: Json[] = [];
    for (const r of inGv) {
      resources.push({ name: r.plural, singularName: r.kind.toLowerCase(), namespaced: r.namespaced, kind: r.kind, verbs: ["create", "delete", "get", "list", "patch", "update", "watch"] });
      if (r.status) resources.push({ name: `${r.plural}/status`, singularName: "", namespaced: r.namespaced, kind: r.kind, verbs: ["get", "patch", "update"] });
    }
    return { kind: "APIResourceList", apiVersion: "v1", groupVersion: apiVersionOfRes({ group, version }), resources };
  }

  private listResponse(rt: ResourceType, namespace: string | undefined, query: Record<string, string>): JsonObject {
    const labels = parseLabelSelector(query["labelSelector"]);
    const fields = parseFieldSelector(rt, query["fieldSelector"]);
    const rvParam = query["resourceVersion"];
    if (query["resourceVersionMatch"] === "Exact" && rvParam !== undefined && Number(rvParam) < this.compactedRv) throw new HttpError(410, "Expired", `too old resource version: ${rvParam} (${this.compactedRv})`);
    const items = this.sorted(rt)
      .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .filter((o) => matches(o, labels, fields))
      .map((o) => (rt.builtin ? withoutTypeMeta(o) : o));
    return { kind: `${rt.kind}List`, apiVersion: apiVersionOfRes(rt), metadata: { resourceVersion: String(this.rv) }, items: items as unknown as Json[] };
  }

  private startWatch(rt: ResourceType, namespace: string | undefined, query: Record<string, string>, res: ServerResponse): number {
    const labelSelector = parseLabelSelector(query["labelSelector"]);
    const fieldSelector = parseFieldSelector(rt, query["fieldSelector"]);
    const rvParam = query["resourceVersion"];
    const from = rvParam === undefined || rvParam === "" || rvParam === "0" ? undefined : Number(rvParam);
    if (from !== undefined && !Number.isInteger(from)) throw new HttpError(400, "BadRequest", `resourceVersion: Invalid value: "${rvParam}": strconv.ParseUint: parsing "${rvParam}": invalid syntax`);
    const tooOld = from !== undefined && from < this.compactedRv;
    if (tooOld && this.goneAsHttpStatus) throw new HttpError(410, "Expired", `too old resource version: ${from} (${this.compactedRv})`);
    res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked", "Cache-Control": "no-cache, private" });
    res.flushHeaders();
    const w: Watcher = { res: rt, namespace, labelSelector, fieldSelector, response: res, timers: [] };
    if (tooOld) {
      this.send(w, { type: "ERROR", object: expiredStatus(from, this.compactedRv) });
      res.end();
      return 200;
    }
    if (from === undefined) {
      for (const o of this.sorted(rt)) if (this.inScope(w, o)) this.send(w, { type: "ADDED", object: o as unknown as Json });
    } else {
      for (const e of this.history) if (e.rv > from && e.res === rt) this.deliver(w, e);
    }
    this.watchers.add(w);
    res.on("close", () => this.endWatch(w));
    if (query["allowWatchBookmarks"] === "true") {
      const t = setInterval(() => this.send(w, { type: "BOOKMARK", object: { kind: rt.kind, apiVersion: apiVersionOfRes(rt), metadata: { resourceVersion: String(this.rv) } } }), this.bookmarkIntervalMs);
      w.timers.push(t);
    }
    const timeout = Number(query["timeoutSeconds"]);
    if (Number.isFinite(timeout) && timeout > 0) w.timers.push(setTimeout(() => this.endWatch(w), timeout * 1000));
    return 200;
  }

  private inScope(w: Watcher, o: FakeObject | undefined): boolean {
    if (!o) return false;
    if (w.namespace !== undefined && o.metadata.namespace !== w.namespace) return false;
    return matches(o, w.labelSelector, w.fieldSelector);
  }

  /** Sends a stored event as this watcher sees it (selector transitions become ADDED/DELETED). */
  private deliver(w: Watcher, e: StoredEvent): void {
    const now = e.type !== "DELETED" && this.inScope(w, e.object);
    const before = e.type === "MODIFIED" ? this.inScope(w, e.previous) : e.type === "DELETED" ? this.inScope(w, e.previous) : false;
    let type: string | undefined;
    if (e.type === "ADDED") type = now ? "ADDED" : undefined;
    else if (e.type === "DELETED") type = before ? "DELETED" : undefined;
    else type = now && before ? "MODIFIED" : now ? "ADDED" : before ? "DELETED" : undefined;
    if (type) this.send(w, { type, object: e.object as unknown as Json });
  }

  private send(w: Watcher, event: JsonObject): void {
    if (w.response.writableEnded || w.response.destroyed) return;
    w.response.write(`${JSON.stringify(event)}\n`);
  }

  private endWatch(w: Watcher): void {
    if (!this.watchers.delete(w) && w.response.writableEnded) return;
    for (const t of w.timers) clearTimeout(t);
    if (!w.response.writableEnded) w.response.end();
  }
}

// ------------------------------------------------------------------ selectors

type LabelRequirement = ReturnType<typeof parseSelectorText>[number];
type FieldRequirement = { path: string; op: "=" | "!="; value: string };

/** Kubernetes label selector text (`a=b,c!=d,e in (x,y),f notin (z),g,!h`), as sluicectl get -l parses it. */
function parseLabelSelector(text: string | undefined): LabelRequirement[] {
  if (!text) return [];
  try {
    return parseSelectorText(text);
  } catch (err) {
    throw new HttpError(400, "BadRequest", `unable to parse requirement: ${(err as Error).message}`);
  }
}

const FIELDS: Record<string, readonly string[]> = {
  pods: ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"],
  nodes: ["spec.unschedulable"],
  namespaces: ["status.phase"],
};

function parseFieldSelector(rt: ResourceType, text: string | undefined): FieldRequirement[] {
  if (!text) return [];
  return text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(p);
      if (!m) throw new HttpError(400, "BadRequest", `invalid field selector: ${p}`);
      const path = m[1] as string;
      const allowed = path === "metadata.name" || (path === "metadata.namespace" && rt.namespaced) || (FIELDS[rt.plural] ?? []).includes(path);
      if (!allowed) throw new HttpError(400, "BadRequest", `field label not supported: ${path}`);
      return { path, op: m[2] === "!=" ? "!=" : "=", value: m[3] as string };
    });
}

function matches(o: FakeObject, labels: LabelRequirement[], fields: FieldRequirement[]): boolean {
  if (!selectorMatches(labels, (isRecord(o.metadata["labels"]) ? o.metadata["labels"] : {}) as Record<string, string>)) return false;
  for (const f of fields) {
    let cur: unknown = o;
    for (const k of f.path.split(".")) cur = isRecord(cur) ? cur[k] : undefined;
    const text = cur === undefined || cur === null ? (f.path === "spec.hostNetwork" ? "false" : "") : String(cur);
    if ((f.op === "=") !== (text === f.value)) return false;
  }
  return true;
}

// ------------------------------------------------------------------ patches

/** Applies a PATCH body of the given content type; throws HttpError 415/422 as the server would. */
export function applyPatch(contentType: string | undefined, current: FakeObject, body: unknown): JsonObject {
  const base = clone(current) as unknown as JsonObject;
  switch (contentType) {
    case "application/merge-patch+json":
      return asObject(mergePatch(base, body as Json));
    case "application/strategic-merge-patch+json":
      return asObject(strategicMergePatch(base, body as Json, ""));
    case "application/json-patch+json":
      if (!Array.isArray(body)) throw new HttpError(400, "BadRequest", "json patch must be an array of operations");
      return asObject(jsonPatch(base, body));
    default:
      throw new HttpError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`);
  }
}

/** RFC 7386. */
function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isRecord(patch)) return clone(patch);
  const out: JsonObject = isRecord(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Merge keys of the list fields Kubernetes declares `patchStrategy: merge` for (by field name; the ones we touch). */
const MERGE_KEYS: Record<string, string> = {
  conditions: "type",
  addresses: "type",
  containers: "name",
  initContainers: "name",
  ephemeralContainers: "name",
  volumes: "name",
  env: "name",
  ports: "containerPort",
  podIPs: "ip",
  hostIPs: "ip",
  imagePullSecrets: "name",
  ownerReferences: "uid",
  taints: "key",
};
/** Lists of scalars that strategic merge unions instead of replacing. */
const MERGED_SCALAR_LISTS = new Set(["finalizers", "podCIDRs"]);

/** Strategic merge patch for maps and the lists above; `$patch: replace|delete` honoured. */
function strategicMergePatch(target: Json | undefined, patch: Json, field: string): Json {
  if (Array.isArray(patch)) {
    const key = MERGE_KEYS[field];
    if (key && Array.isArray(target)) {
      const out = [...target];
      for (const item of patch) {
        if (!isRecord(item)) continue;
        const idx = out.findIndex((x) => isRecord(x) && x[key] === item[key]);
        if (item["$patch"] === "delete") {
          if (idx >= 0) out.splice(idx, 1);
          continue;
        }
        if (idx >= 0) out[idx] = strategicMergePatch(out[idx], item, "");
        else out.push(stripDirectives(item));
      }
      return out;
    }
    if (MERGED_SCALAR_LISTS.has(field) && Array.isArray(target)) return [...target, ...patch.filter((v) => !target.some((t) => isDeepStrictEqual(t, v)))];
    return patch.map((x) => stripDirectives(x));
  }
  if (!isRecord(patch)) return clone(patch);
  if (patch["$patch"] === "replace") return stripDirectives(patch);
  if (patch["$patch"] === "delete") return {};
  const out: JsonObject = isRecord(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$")) continue;
    if (v === null) delete out[k];
    else out[k] = strategicMergePatch(out[k], v, k);
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isRecord(v)) return v;
  return Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith("$")).map(([k, x]) => [k, stripDirectives(x)]));
}

/** RFC 6902. */
function jsonPatch(doc: Json, ops: unknown[]): Json {
  let root = doc;
  const parse = (p: unknown): string[] => {
    if (typeof p !== "string" || (p !== "" && !p.startsWith("/"))) throw new HttpError(422, "Invalid", `invalid JSON pointer: ${String(p)}`);
    return p === "" ? [] : p.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  };
  const parentOf = (path: string[]): { parent: Json; key: string } => {
    let cur: Json = root;
    for (const k of path.slice(0, -1)) {
      const next: Json | undefined = Array.isArray(cur) ? cur[Number(k)] : isRecord(cur) ? cur[k] : undefined;
      if (next === undefined) throw new HttpError(422, "Invalid", `the path /${path.join("/")} does not exist`);
      cur = next;
    }
    return { parent: cur, key: path[path.length - 1] as string };
  };
  const getAt = (path: string[]): Json => {
    if (path.length === 0) return root;
    const { parent, key } = parentOf(path);
    const v = Array.isArray(parent) ? parent[Number(key)] : isRecord(parent) ? parent[key] : undefined;
    if (v === undefined) throw new HttpError(422, "Invalid", `the path /${path.join("/")} does not exist`);
    return v;
  };
  const remove = (path: string[]): Json => {
    const v = getAt(path);
    const { parent, key } = parentOf(path);
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else if (isRecord(parent)) delete parent[key];
    return v;
  };
  const add = (path: string[], value: Json, replace: boolean): void => {
    if (path.length === 0) {
      root = value;
      return;
    }
    const { parent, key } = parentOf(path);
    if (Array.isArray(parent)) {
      const i = key === "-" ? parent.length : Number(key);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new HttpError(422, "Invalid", `index ${key} out of range`);
      if (replace) {
        if (i >= parent.length) throw new HttpError(422, "Invalid", `index ${key} out of range`);
        parent[i] = value;
      } else parent.splice(i, 0, value);
    } else if (isRecord(parent)) {
      if (replace && !(key in parent)) throw new HttpError(422, "Invalid", `the path /${path.join("/")} does not exist`);
      parent[key] = value;
    } else throw new HttpError(422, "Invalid", `the path /${path.join("/")} does not exist`);
  };
  for (const raw of ops) {
    if (!isRecord(raw)) throw new HttpError(400, "BadRequest", "json patch operation must be an object");
    const op = raw["op"];
    const path = parse(raw["path"]);
    if (op === "add") add(path, clone(raw["value"] as Json), false);
    else if (op === "replace") add(path, clone(raw["value"] as Json), true);
    else if (op === "remove") remove(path);
    else if (op === "move") add(path, remove(parse(raw["from"])), false);
    else if (op === "copy") add(path, clone(getAt(parse(raw["from"]))), false);
    else if (op === "test") {
      if (!isDeepStrictEqual(getAt(path), raw["value"])) throw new HttpError(422, "Invalid", `test operation failed at /${path.join("/")}`);
    } else throw new HttpError(400, "BadRequest", `unknown json patch operation: ${String(op)}`);
  }
  return root;
}

// ------------------------------------------------------------------ helpers

const keyOf = (ns: string | undefined, name: string): string => `${ns ?? ""}/${name}`;

function isRecord(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function asObject(v: unknown): JsonObject {
  if (!isRecord(v)) throw new HttpError(400, "BadRequest", "the request body must be a JSON object");
  return v;
}

function withField(o: FakeObject, key: string, value: unknown): FakeObject {
  const out: FakeObject = { ...o };
  if (value === undefined) delete out[key];
  else out[key] = value;
  return out;
}

function withoutTypeMeta(o: FakeObject): JsonObject {
  const rest: Partial<FakeObject> = { ...o };
  delete rest.apiVersion;
  delete rest.kind;
  return rest as unknown as JsonObject;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString()));
    req.on("error", reject);
  });
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function statusObject(e: HttpError): JsonObject {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: e.message, reason: e.reason, ...(e.details ? { details: e.details } : {}), code: e.code };
}

function notFound(rt: ResourceType, name: string): HttpError {
  return new HttpError(404, "NotFound", `${rt.group ? `${rt.plural}.${rt.group}` : rt.plural} "${name}" not found`, { name, ...(rt.group ? { group: rt.group } : {}), kind: rt.plural });
}

function expiredStatus(from: number | undefined, compacted: number): JsonObject {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `too old resource version: ${from ?? 0} (${compacted})`, reason: "Expired", code: 410 };
}

// ------------------------------------------------------------------ child process

/** The control operations a FakeKubeApiProcess forwards over IPC (FakeKubeApi methods of the same name). */
export const CONTROL_OPS = ["put", "remove", "get", "list", "compact", "expireWatches", "closeWatches", "failLists", "uninstall", "install", "watchCounts", "outage", "recover", "requests", "clearRequests", "kubeconfig"] as const;
export type ControlOp = (typeof CONTROL_OPS)[number];

type Remote<T> = { [K in ControlOp]: T[K & keyof T] extends (...a: infer A) => infer R ? (...a: A) => Promise<Awaited<R>> : never };

export interface IpcRequest {
  id: number;
  op: ControlOp;
  args: unknown[];
}
export type IpcReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };
export type IpcReady = { ready: true; url: string; port: number };

export interface FakeKubeApiProcessOptions {
  /** Listen address; default 127.0.0.1. In a network namespace: an address of that namespace. */
  host?: string;
  port?: number;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
  bookmarkIntervalMs?: number;
  goneAsHttpStatus?: boolean;
  /** Where the compiled runner is; default next to this file (build/test/helpers/fakeKubeApiMain.js). */
  script?: string;
}

/**
 * The fake API server in a child process (so it can live inside a network namespace),
 * controlled over the IPC channel: every control of FakeKubeApi, as an async method.
 */
export class FakeKubeApiProcess {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;
  /** Everything the child wrote to stderr (its own errors). */
  stderr = "";
  readonly control: Remote<FakeKubeApi>;

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly port: number,
  ) {
    child.on("message", (m: IpcReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    });
    child.on("exit", () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error("fake API server process exited"));
      this.pending.clear();
    });
    const control: Partial<Record<ControlOp, (...a: unknown[]) => Promise<unknown>>> = {};
    for (const op of CONTROL_OPS) control[op] = (...args: unknown[]) => this.call(op, args);
    this.control = control as Remote<FakeKubeApi>;
  }

  static async start(o: FakeKubeApiProcessOptions = {}): Promise<FakeKubeApiProcess> {
    const script = o.script ?? join(__dirname, "fakeKubeApiMain.js");
    const args = [script, "--host", o.host ?? "127.0.0.1", "--port", String(o.port ?? 0)];
    if (o.bookmarkIntervalMs !== undefined) args.push("--bookmark-interval-ms", String(o.bookmarkIntervalMs));
    if (o.goneAsHttpStatus) args.push("--gone-as-http-status");
    const [cmd, argv] = o.netns ? ["ip", ["netns", "exec", o.netns, process.execPath, ...args]] : [process.execPath, args];
    const child = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe", "ipc"] });
    let stderr = "";
    child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
    const ready = await new Promise<IpcReady>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`fake API server did not start within 10s: ${stderr}`)), 10_000);
      child.once("message", (m: IpcReady) => {
        clearTimeout(t);
        resolve(m);
      });
      child.once("exit", (code) => {
        clearTimeout(t);
        reject(new Error(`fake API server exited with ${code}: ${stderr}`));
      });
    });
    const p = new FakeKubeApiProcess(child, ready.url, ready.port);
    p.stderr = stderr;
    child.stderr?.on("data", (c: Buffer) => (p.stderr += c.toString()));
    return p;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private call(op: ControlOp, args: unknown[]): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error("fake API server process exited"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, op, args } satisfies IpcRequest);
    });
  }

  /** Stops the server and the process (SIGTERM, then SIGKILL after 2 s). */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 2000);
    await gone;
    clearTimeout(t);
  }
}
