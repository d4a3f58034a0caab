/**
 * The plugin's side of the files it shares with the agent on the node (layout in
 * src/model/localEndpoints.ts): a WorkloadEndpointRecord per wired pod, in every mode.
 * In Kubernetes mode the kubelet reports a pod's address to the API server only after ADD
 * has returned, so this record is how the agent learns a new local pod's address in time
 * to police it. And the wait for the agent's ready mark (policyReadyTimeoutMs).
 *
 * Synchronous file operations (the plugin does one thing at a time), each file written
 * whole or not at all: a temp file starting with "." renamed into place. What removes a
 * file removes it only when it names the caller's container: records are written and
 * removed under the node lock (nodeLock.ts), so that check and removal are one step; ready
 * marks are the agent's, which takes no lock, so a mark is taken away atomically (renamed
 * to a private name), checked, and put back when it turns out to be a newer container's.
 */
import { linkSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { WorkloadEndpointRecord } from "../model/endpoint.js";
import { localEndpointPath, localEndpointsDir, policyReadyDir, policyReadyPath, readyMarkContainer, readyMarkCovers } from "../model/localEndpoints.js";

/** A temp file this old is a leftover of a killed plugin; GC removes it. */
const STALE_TEMP_MS = 60_000;

const isErrno = (err: unknown, code: string): boolean => (err as NodeJS.ErrnoException | null)?.code === code;

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

function unlinkIfPresent(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

export function writeLocalRecord(dataDir: string, r: WorkloadEndpointRecord): string {
  const dir = localEndpointsDir(dataDir);
  mkdirSync(dir, { recursive: true });
  const path = localEndpointPath(dataDir, r.hostIface);
  const tmp = join(dir, `.${r.hostIface}.${process.pid}.${Date.now().toString(36)}.tmp`);
  writeFileSync(tmp, JSON.stringify(r) + "\n");
  renameSync(tmp, path);
  return path;
}

interface Owner {
  containerId: string;
  ifName: string;
}

const ownedBy = (r: Partial<WorkloadEndpointRecord> | undefined, o: Owner): boolean => r?.containerId === o.containerId && r.ifName === o.ifName;

function parseRecord(text: string | undefined): Partial<WorkloadEndpointRecord> | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === "object" && v !== null ? (v as Partial<WorkloadEndpointRecord>) : undefined;
  } catch {
    return undefined;
  }
}

/** The record of `hostIface` as far as it reads (undefined when there is none). */
export function readLocalRecord(dataDir: string, hostIface: string): Partial<WorkloadEndpointRecord> | undefined {
  return parseRecord(readText(localEndpointPath(dataDir, hostIface)));
}

/**
 * Removes the ready mark of `hostIface` when `removable` says so of the container it names
 * (undefined: it names none, an older format). The agent may replace the mark at any time,
 * so the mark is first taken away (renamed to a private name), then judged; one that
 * names a container it must not remove goes back, unless a newer one took its place
 * meanwhile (link() fails then, and the newer one stays).
 */
function removeReadyMarkIf(dataDir: string, hostIface: string, removable: (containerId: string | undefined) => boolean): boolean {
  const path = policyReadyPath(dataDir, hostIface);
  const text = readText(path);
  if (text === undefined || !removable(readyMarkContainer(text))) return false;
  const taken = join(policyReadyDir(dataDir), `.${hostIface}.${process.pid}.${Date.now().toString(36)}.del`);
  try {
    renameSync(path, taken);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
  try {
    const got = readText(taken);
    if (got !== undefined && removable(readyMarkContainer(got))) return true;
    try {
      linkSync(taken, path);
    } catch (err) {
      if (!isErrno(err, "EEXIST")) throw err;
    }
    return false;
  } finally {
    unlinkIfPresent(taken);
  }
}

/**
 * Removes the record of `hostIface` if it belongs to this container (a newer container of
 * the same pod keeps its own), and the ready mark if it names this container (or none).
 * Call under the node lock.
 */
export function removeLocalRecord(dataDir: string, hostIface: string, owner: Owner): boolean {
  const path = localEndpointPath(dataDir, hostIface);
  removeReadyMarkIf(dataDir, hostIface, (c) => c === undefined || c === owner.containerId);
  if (!ownedBy(parseRecord(readText(path)), owner)) return false;
  unlinkIfPresent(path);
  return true;
}

/** The records under the endpoints dir, by host interface (unreadable ones left out). */
export function listLocalRecords(dataDir: string): Array<{ hostIface: string; record: Partial<WorkloadEndpointRecord> }> {
  let names: string[];
  try {
    names = readdirSync(localEndpointsDir(dataDir));
  } catch (err) {
    if (isErrno(err, "ENOENT")) return [];
    throw err;
  }
  return names
    .filter((n) => n.endsWith(".json") && !n.startsWith("."))
    .flatMap((n) => {
      const hostIface = n.slice(0, -".json".length);
      const record = parseRecord(readText(join(localEndpointsDir(dataDir), n)));
      return record ? [{ hostIface, record }] : [];
    });
}

/** DEL without pod names: the record of this container, wherever it is. Call under the node lock. */
export function removeLocalRecordsOf(dataDir: string, owner: Owner): number {
  let n = 0;
  for (const e of listLocalRecords(dataDir)) if (ownedBy(e.record, owner) && removeLocalRecord(dataDir, e.hostIface, owner)) n++;
  return n;
}

/**
 * GC: removes the records (and ready marks) of attachments not in `keep`
 * ("<containerId>/<ifName>"), unreadable records and stale temp files. Returns the host
 * interfaces whose records went. Call under the node lock.
 */
export function gcLocalRecords(dataDir: string, keep: ReadonlySet<string>): string[] {
  const dir = localEndpointsDir(dataDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return [];
    throw err;
  }
  const removed: string[] = [];
  const keepContainers = new Set([...keep].map((k) => k.slice(0, k.lastIndexOf("/"))));
  for (const n of names) {
    const path = join(dir, n);
    if (n.startsWith(".")) {
      try {
        if (Date.now() - statSync(path).mtimeMs > STALE_TEMP_MS) unlinkIfPresent(path);
      } catch {
        /* gone meanwhile */
      }
      continue;
    }
    if (!n.endsWith(".json")) continue;
    const r = parseRecord(readText(path));
    if (r && keep.has(`${String(r.containerId)}/${String(r.ifName)}`)) continue;
    const hostIface = n.slice(0, -".json".length);
    unlinkIfPresent(path);
    removeReadyMarkIf(dataDir, hostIface, (c) => c === undefined || !keepContainers.has(c));
    removed.push(hostIface);
  }
  return removed;
}

/**
 * Removes a ready mark that could pass for this ADD's although the agent wrote it before
 * this ADD began: one naming this same container (an earlier, failed ADD of it) or none.
 * A mark naming another container never counts for this one and is the agent's to replace.
 */
export function clearReadyMark(dataDir: string, hostIface: string, containerId: string): void {
  removeReadyMarkIf(dataDir, hostIface, (c) => c === undefined || c === containerId);
}

/**
 * Waits until the agent's ready mark for `hostIface` names this container and exactly
 * `ips`, polling every `pollMs`; false when `timeoutMs` passes first.
 */
export async function waitPolicyReady(dataDir: string, hostIface: string, containerId: string, ips: readonly string[], timeoutMs: number, pollMs = 20): Promise<boolean> {
  const path = policyReadyPath(dataDir, hostIface);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = readText(path);
    if (text !== undefined && readyMarkCovers(text, containerId, ips)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(1, deadline - Date.now()))));
  }
}
