/**
 * The plugin's side of the files it shares with the agent on the node (layout in
 * src/model/localEndpoints.ts): a WorkloadEndpointRecord per wired pod, in every mode.
 * In Kubernetes mode the kubelet reports a pod's address to the API server only after ADD
 * has returned, so this record is how the agent learns a new local pod's address in time
 * to police it. And the wait for the agent's ready mark (policyReadyTimeoutMs).
 *
 * Synchronous file operations (the plugin does one thing at a time), each file written
 * whole or not at all: a temp file starting with "." renamed into place.
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { WorkloadEndpointRecord } from "../model/endpoint.js";
import { localEndpointPath, localEndpointsDir, policyReadyPath, readyMarkCovers } from "../model/localEndpoints.js";

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

/** Removes the record of `hostIface` (and its ready mark) if it belongs to this container: a newer pod of the same name keeps its own. */
export function removeLocalRecord(dataDir: string, hostIface: string, owner: Owner): boolean {
  const path = localEndpointPath(dataDir, hostIface);
  if (!ownedBy(parseRecord(readText(path)), owner)) return false;
  unlinkIfPresent(path);
  unlinkIfPresent(policyReadyPath(dataDir, hostIface));
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

/** DEL without pod names: the record of this container, wherever it is. */
export function removeLocalRecordsOf(dataDir: string, owner: Owner): number {
  let n = 0;
  for (const e of listLocalRecords(dataDir)) if (ownedBy(e.record, owner) && removeLocalRecord(dataDir, e.hostIface, owner)) n++;
  return n;
}

/**
 * GC: removes the records (and ready marks) of attachments not in `keep`
 * ("<containerId>/<ifName>"), unreadable records and stale temp files. Returns the host
 * interfaces whose records went.
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
    unlinkIfPresent(policyReadyPath(dataDir, hostIface));
    removed.push(hostIface);
  }
  return removed;
}

/** Removes a ready mark left by an earlier pod of the same name, so only a fresh one counts. */
export function clearReadyMark(dataDir: string, hostIface: string): void {
  unlinkIfPresent(policyReadyPath(dataDir, hostIface));
}

/**
 * Waits until the agent's ready mark for `hostIface` names exactly `ips`, polling every
 * `pollMs`; false when `timeoutMs` passes first.
 */
export async function waitPolicyReady(dataDir: string, hostIface: string, ips: readonly string[], timeoutMs: number, pollMs = 20): Promise<boolean> {
  const path = policyReadyPath(dataDir, hostIface);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = readText(path);
    if (text !== undefined && readyMarkCovers(text, ips)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(1, deadline - Date.now()))));
  }
}
