/** Throwaway network namespaces for a test file, removed in `after` even when tests fail. */
import { addNetns, delNetns, listNetns, netnsPids } from "../../src/sandbox/netns.js";

export function uniquePrefix(tag: string): string {
  return `slt${tag}${process.pid.toString(36)}`;
}

export async function makeNetns(name: string): Promise<string> {
  if ((await listNetns()).includes(name)) await delNetns(name);
  await addNetns(name);
  return name;
}

/**
 * Whether `name` is `prefix` itself or `prefix-...` (a prefix ending in "-" is taken as is).
 * A bare startsWith would let uniquePrefix of pid "rs" take the namespaces of pid "rs5".
 */
export function hasNetnsPrefix(name: string, prefix: string): boolean {
  return prefix.endsWith("-") ? name.startsWith(prefix) : name === prefix || name.startsWith(`${prefix}-`);
}

/** Removes the namespace `prefix` and every `prefix-...` (processes inside first). */
export async function removeNetnsWithPrefix(prefix: string): Promise<void> {
  for (const ns of (await listNetns()).filter((n) => hasNetnsPrefix(n, prefix))) {
    for (const pid of await netnsPids(ns)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await delNetns(ns);
  }
}
