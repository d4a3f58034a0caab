/**
 * One lock per data directory for the plugin's check-then-delete steps: DEL, GC and an
 * ADD's rollback read who owns a pod's record, address file or ready mark and then remove
 * it, and ADD writes a pod's record. Without the lock a DEL of an old container could
 * read "mine", lose the CPU to the ADD of the pod's new container writing its record, and
 * then delete the new one. Address files need it among releasers only: allocation never
 * replaces a file (link() fails with EEXIST), so under the lock a file read as "mine"
 * stays mine until it is unlinked.
 *
 * The lock is an abstract unix socket bound in the node's network namespace (where the
 * runtime runs every plugin call): binding is exclusive, and the kernel releases it when
 * the process exits however it exits, so a killed plugin never leaves a stale lock (a
 * lock file would). It is held for file operations only, milliseconds; never across the
 * kernel wiring or the policy-ready wait.
 */
import { createHash } from "node:crypto";
import { type Server, createServer } from "node:net";
import { resolve } from "node:path";
import { CNI_ERR, CniError } from "./errors.js";

/** A plugin holds the lock for milliseconds; this long means something is wrong. */
const LOCK_TIMEOUT_MS = 10_000;
const RETRY_MS = 2;

export const nodeLockName = (dataDir: string): string => `\0sluice-cni/${createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 32)}`;

function tryBind(name: string): Promise<Server | undefined> {
  return new Promise((done, fail) => {
    const server = createServer((socket) => socket.destroy());
    server.once("error", (err: NodeJS.ErrnoException) => (err.code === "EADDRINUSE" ? done(undefined) : fail(err)));
    server.listen({ path: name, exclusive: true }, () => {
      server.unref();
      done(server);
    });
  });
}

/** Runs `fn` holding the lock of `dataDir`; a lock not obtained within the timeout fails the call (try again later). */
export async function withNodeLock<T>(dataDir: string, fn: () => T | Promise<T>, timeoutMs = LOCK_TIMEOUT_MS): Promise<T> {
  const name = nodeLockName(dataDir);
  const deadline = Date.now() + timeoutMs;
  let held: Server | undefined;
  for (;;) {
    try {
      held = await tryBind(name);
    } catch (err) {
      throw new CniError(CNI_ERR.io, `taking the node lock of ${dataDir} failed: ${(err as Error).message}`);
    }
    if (held) break;
    if (Date.now() >= deadline) throw new CniError(CNI_ERR.tryAgainLater, `another sluice-cni call has held the node lock of ${dataDir} for over ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
  try {
    return await fn();
  } finally {
    held.close();
  }
}
