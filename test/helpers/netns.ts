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

export async function removeNetnsWithPrefix(prefix: string): Promise<void> {
  for (const ns of (await listNetns()).filter((n) => n.startsWith(prefix))) {
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
