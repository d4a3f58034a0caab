/** Kernel switches under /proc/sys, read and written as files (per network namespace). */
import { readFile, writeFile } from "node:fs/promises";

export async function readSysctl(path: string): Promise<string> {
  return (await readFile(`/proc/sys/${path}`, "utf8")).trim();
}

export async function writeSysctl(path: string, value: string): Promise<void> {
  await writeFile(`/proc/sys/${path}`, value);
}

/** Turns a switch on if it is off; returns whether it had to change it. */
export async function ensureSysctl(path: string, value: string): Promise<boolean> {
  if ((await readSysctl(path)) === value) return false;
  await writeSysctl(path, value);
  return true;
}
