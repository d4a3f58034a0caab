/**
 * The sandbox's and the demo's state directories hold what root acts on later: pid files
 * (processes to kill), the state file (the agent and plugin binaries to run), etcd's data
 * and its client key. The defaults live in /tmp, where anyone can make a directory or a
 * symlink first, so a state directory is created 0700 and an existing one is used only
 * when it is a real directory (not a symlink) owned by this user; a looser mode of our own
 * directory is tightened to 0700. Anything else is refused with the reason, before
 * anything is read from it, written to it or removed from it.
 */
import { chmodSync, lstatSync, mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "../config/errors.js";

const isErrno = (err: unknown, code: string): boolean => (err as NodeJS.ErrnoException | null)?.code === code;

const myUid = (): number => (typeof process.getuid === "function" ? process.getuid() : 0);

/**
 * Why `path` must not be used as a private state directory, or undefined when it may
 * (tightening its mode to 0700 on the way); "missing" when there is nothing there.
 */
function inspect(path: string): string | "missing" | undefined {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return "missing";
    throw err;
  }
  if (st.isSymbolicLink()) return "is a symbolic link";
  if (!st.isDirectory()) return "is not a directory";
  if (st.uid !== myUid()) return `is owned by uid ${st.uid}, not by this user (uid ${myUid()})`;
  if ((st.mode & 0o077) !== 0) chmodSync(path, 0o700);
  return undefined;
}

function refuse(path: string, why: string, field: string): never {
  throw new ConfigError(field, `${path} ${why}; refusing to use it as a state directory (remove it, or pick another with --state-dir)`, "sluicectl");
}

/** Creates `path` 0700 (and missing parents), or checks the one that is there. */
export function ensurePrivateDir(path: string, field = "--state-dir"): string {
  const abs = resolve(path);
  let why = inspect(abs);
  if (why === "missing") {
    mkdirSync(abs, { recursive: true, mode: 0o700 });
    why = inspect(abs);
  }
  if (why === "missing") refuse(abs, "vanished while it was created", field);
  if (why !== undefined) refuse(abs, why, field);
  return abs;
}

/** Checks an existing state directory; false when there is none. */
export function checkPrivateDir(path: string, field = "--state-dir"): boolean {
  const abs = resolve(path);
  const why = inspect(abs);
  if (why === "missing") return false;
  if (why !== undefined) refuse(abs, why, field);
  return true;
}
