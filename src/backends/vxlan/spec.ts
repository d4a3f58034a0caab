/**
 * VXLAN (flannel's default): one device per family (`sluice.<VNI>`, `sluice-v6.<VNI>`)
 * carries pod traffic to each peer's VTEP, found by the peer's VtepMAC in its lease: a
 * route via the peer subnet's first address onlink, a permanent neighbour entry for that
 * address, an FDB entry sending the MAC to the peer's public address. DirectRouting routes
 * an on-link peer directly instead, as host-gw does.
 */
import { z } from "zod";
import type { Family, IpAddr } from "../../model/ip.js";
import type { DesiredRouting, PeerDecision } from "../../routing/desired.js";
import { directRoute } from "../directRoute.js";
import { parseBackendKeys } from "../parseBackendKeys.js";
import type { BackendSpec, PeerRoute, RawBackend, RouteContext } from "../types.js";

export interface VxlanBackend {
  type: "vxlan";
  vni: number;
  /** UDP destination port; 0 means the kernel's default (8472 on Linux, as flannel). */
  port: number;
  directRouting: boolean;
  /** Explicit MTU for the VXLAN device; undefined = underlay MTU minus 50. */
  mtu: number | undefined;
  gbp: boolean;
  learning: boolean;
  /** The first two bytes of generated VTEP MACs (flannel's MacPrefix). */
  macPrefix: string;
}

/** The kernel's default VXLAN port, which flannel also uses when Port is 0. */
export const DEFAULT_VXLAN_PORT = 8472;

export function vxlanPort(b: VxlanBackend): number {
  return b.port === 0 ? DEFAULT_VXLAN_PORT : b.port;
}

export function vxlanDeviceName(vni: number, family: Family): string {
  return family === 4 ? `sluice.${vni}` : `sluice-v6.${vni}`;
}

/** flannel's BackendData for vxlan: `{"VNI": 1, "VtepMAC": "0e:2a:..."}`. */
export interface VxlanLeaseData {
  VNI?: number;
  VtepMAC: string;
}

/** The VTEP MAC in a lease's (V6) backend data, if it carries a well-formed one. */
export function vtepMacOf(data: unknown): string | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const mac = (data as Record<string, unknown>)["VtepMAC"];
  return typeof mac === "string" && /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac) ? mac.toLowerCase() : undefined;
}

const keys = z
  .object({
    VNI: z.number().int().min(0).max(16777215, "must fit in 24 bits").optional(),
    Port: z.number().int().min(0).max(65535).optional(),
    DirectRouting: z.boolean().optional(),
    MTU: z.number().int().min(68, "must be at least 68").max(65535).optional(),
    GBP: z.boolean().optional(),
    Learning: z.boolean().optional(),
    MacPrefix: z
      .string()
      .regex(/^[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}$/, "must be two hex bytes such as 0E:2A")
      .optional(),
  })
  .loose();

export const vxlanSpec: BackendSpec<VxlanBackend> = {
  type: "vxlan",

  parse(raw: RawBackend, source: string): VxlanBackend {
    const k = parseBackendKeys(keys, raw, source);
    return {
      type: "vxlan",
      vni: k.VNI ?? 1,
      port: k.Port ?? 0,
      directRouting: k.DirectRouting ?? false,
      mtu: k.MTU,
      gbp: k.GBP ?? false,
      learning: k.Learning ?? false,
      macPrefix: (k.MacPrefix ?? "0E:2A").toLowerCase(),
    };
  },

  /** The underlay's minus VXLAN's overhead (50 bytes over IPv4, 70 over an IPv6 underlay, which flannel leaves out), unless MTU is set. */
  podMtu(c: VxlanBackend, underlayMtu: number, ipv6Underlay: boolean): number {
    return c.mtu ?? underlayMtu - (ipv6Underlay ? 70 : 50);
  },

  leaseData(c: VxlanBackend, local) {
    const out: Partial<Record<Family, VxlanLeaseData>> = {};
    for (const family of [4, 6] as const) {
      const mac = local[family];
      if (typeof mac === "string") out[family] = { VNI: c.vni, VtepMAC: mac };
    }
    return out;
  },

  devices: (c: VxlanBackend) => ({ 4: vxlanDeviceName(c.vni, 4), 6: vxlanDeviceName(c.vni, 6) }),

  encapsulation: (c: VxlanBackend) => ({ port: vxlanPort(c) }),

  routePeer(c: VxlanBackend, ctx: RouteContext, peer: PeerRoute, out: DesiredRouting): PeerDecision {
    if (c.directRouting && ctx.onLink(peer.publicIP)) {
      directRoute(peer, out);
      return { peer: peer.name, via: "direct", reason: "DirectRouting: peer is on-link" };
    }
    const mac = vtepMacOf(peer.data);
    if (!mac) {
      const reason = `peer ${peer.name} has no VtepMAC in its IPv${peer.family} backend data (backend ${peer.backendType || "unknown"})`;
      out.problems.push(reason);
      return { peer: peer.name, via: "skipped", reason };
    }
    const dev = vxlanDeviceName(c.vni, peer.family);
    const tunnelIp: IpAddr = { family: peer.family, value: peer.subnet.ip };
    out.routes.push({ dst: peer.subnet, gateway: tunnelIp, dev, onlink: true, blackhole: false });
    out.neighbors.push({ dev, ip: tunnelIp, mac });
    out.fdb.push({ dev, mac, dst: peer.publicIP });
    return { peer: peer.name, via: "vxlan" };
  },
};
