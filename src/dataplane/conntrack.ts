/**
 * Forgets conntrack entries of addresses that no longer belong to a pod. Endpoint chains
 * accept ESTABLISHED traffic before any policy, so a flow that was allowed to a deleted
 * pod would otherwise reach whichever pod gets its address next (UDP keeps such entries
 * alive as long as the sender keeps sending). Felix does the same on endpoint removal.
 */
import type { Logger } from "pino";
import { parseIp } from "../model/ip.js";
import { run } from "./exec.js";

export async function forgetConntrackOf(addresses: readonly string[], log: Logger, netns?: string): Promise<number> {
  let deleted = 0;
  for (const addr of addresses) {
    const family = parseIp(addr).family === 6 ? "ipv6" : "ipv4";
    for (const dir of ["-s", "-d"]) {
      const args = ["-D", "-f", family, dir, addr];
      const [cmd, argv] = netns ? ["ip", ["netns", "exec", netns, "conntrack", ...args]] : ["conntrack", args];
      const r = await run(cmd, argv).catch((err: Error) => ({ code: -1, stdout: "", stderr: err.message }));
      // conntrack exits 1 when nothing matched; that is the common case, not an error.
      const m = /(\d+) flow entries have been deleted/.exec(r.stderr);
      if (m) deleted += Number(m[1]);
      else if (r.code !== 0 && r.code !== 1) log.warn({ addr, err: r.stderr.trim() }, "cannot delete conntrack entries");
    }
  }
  if (deleted > 0) log.info({ addresses, deleted }, "deleted conntrack entries of removed pods");
  return deleted;
}
