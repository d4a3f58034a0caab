/**
 * Makes the kernel's routes, neighbour entries and FDB entries match the desired
 * routing: reads, diffs, changes only what differs. The same pass serves start-up,
 * every peer change and the periodic resync that puts back what someone deleted.
 */
import type { Logger } from "pino";
import { type Family, cidrEquals, formatCidr, formatIp, ipEquals } from "../model/ip.js";
import type { DesiredRoute, DesiredRouting } from "../routing/desired.js";
import { type Netlink, type RouteInfo, SLUICE_RT_PROTO } from "./netlink.js";

export interface ReconcileCounts {
  routesSet: number;
  routesDeleted: number;
  neighSet: number;
  neighDeleted: number;
  fdbSet: number;
  fdbDeleted: number;
}

const key = (f: Family, text: string): string => `${f}|${text}`;

export async function reconcileRouting(nl: Netlink, desired: DesiredRouting, vxlanDevices: readonly string[], log: Logger): Promise<ReconcileCounts> {
  const counts: ReconcileCounts = { routesSet: 0, routesDeleted: 0, neighSet: 0, neighDeleted: 0, fdbSet: 0, fdbDeleted: 0 };
  const links = await nl.links();
  const indexOf = new Map(links.map((l) => [l.name, l.index]));

  for (const family of [4, 6] as const) {
    const want = desired.routes.filter((r) => r.dst.family === family);
    const actual = (await nl.routes(family)).filter((r) => r.protocol === SLUICE_RT_PROTO);
    const wantKeys = new Set(want.map((r) => key(family, formatCidr(r.dst))));
    for (const r of want) {
      const oif = r.dev ? indexOf.get(r.dev) : undefined;
      if (r.dev && oif === undefined) {
        log.warn({ dst: formatCidr(r.dst), dev: r.dev }, "route device missing; will retry");
        continue;
      }
      const have = actual.find((a) => cidrEquals(a.dst, r.dst));
      if (have && routeMatches(have, r, oif)) continue;
      try {
        await nl.replaceRoute({ dst: r.dst, gateway: r.gateway, oif, onlink: r.onlink, blackhole: r.blackhole });
        counts.routesSet++;
      } catch (err) {
        log.error({ dst: formatCidr(r.dst), gateway: r.gateway ? formatIp(r.gateway) : undefined, err: (err as Error).message }, "cannot program route");
      }
    }
    for (const a of actual) {
      if (wantKeys.has(key(family, formatCidr(a.dst)))) continue;
      await nl.deleteRoute(a).catch((err: Error) => log.warn({ dst: formatCidr(a.dst), err: err.message }, "cannot delete stale route"));
      counts.routesDeleted++;
    }
  }

  for (const dev of vxlanDevices) {
    const ifindex = indexOf.get(dev);
    if (ifindex === undefined) continue;
    for (const family of [4, 6] as const) {
      const want = desired.neighbors.filter((n) => n.dev === dev && n.ip.family === family);
      const actual = (await nl.neighbors(family, ifindex)).filter((n) => n.permanent);
      for (const n of want) {
        const have = actual.find((a) => ipEquals(a.ip, n.ip));
        if (have && have.mac === n.mac) continue;
        await nl.replaceNeighbor(ifindex, n.ip, n.mac);
        counts.neighSet++;
      }
      for (const a of actual) {
        if (want.some((n) => ipEquals(n.ip, a.ip))) continue;
        await nl.deleteNeighbor(ifindex, a.ip).catch((err: Error) => log.warn({ ip: formatIp(a.ip), err: err.message }, "cannot delete stale neighbour"));
        counts.neighDeleted++;
      }
    }
    const wantFdb = desired.fdb.filter((f) => f.dev === dev);
    const actualFdb = (await nl.fdb(ifindex)).filter((f) => f.permanent && f.dst !== undefined);
    for (const f of wantFdb) {
      if (actualFdb.some((a) => a.mac === f.mac && a.dst && ipEquals(a.dst, f.dst))) continue;
      await nl.appendFdb(ifindex, f.mac, f.dst);
      counts.fdbSet++;
    }
    for (const a of actualFdb) {
      if (wantFdb.some((f) => f.mac === a.mac && a.dst && ipEquals(a.dst, f.dst))) continue;
      await nl.deleteFdb(ifindex, a.mac, a.dst).catch((err: Error) => log.warn({ mac: a.mac, err: err.message }, "cannot delete stale FDB entry"));
      counts.fdbDeleted++;
    }
  }
  return counts;
}

function routeMatches(have: RouteInfo, want: DesiredRoute, oif: number | undefined): boolean {
  if (have.blackhole !== want.blackhole) return false;
  if (want.blackhole) return true;
  if (!want.gateway) {
    // A device route (WireGuard picks the peer itself): no gateway, the device ours.
    if (have.gateway) return false;
  } else if (!have.gateway || !ipEquals(have.gateway, want.gateway)) return false;
  if (oif !== undefined && have.oif !== oif) return false;
  return have.onlink === want.onlink;
}
