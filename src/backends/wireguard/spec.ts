/**
 * WireGuard (flannel's `wireguard`): pod traffic between nodes encrypted and authenticated.
 * Each node has one key pair; its public key and listening port go in the lease
 * (flannel's BackendData `{"PublicKey": "...", "Port": 51820}`), so a peer can be
 * configured from the lease alone. A peer subnet is routed through the WireGuard device
 * (no gateway: WireGuard picks the peer by AllowedIPs) and the device gets one peer per
 * node: its key, its underlay endpoint, AllowedIPs its pod subnet.
 *
 * Mode (flannel's): `separate` (default) has a device per family, `sluice-wg` reached over
 * IPv4 on ListenPort and `sluice-wg-v6` over IPv6 on ListenPortV6; `ipv4`, `ipv6` and
 * `auto` have one device, `sluice-wg`, carrying both families' subnets to one endpoint per
 * peer (auto: the IPv4 one when the peer has it, else IPv6). In the single-device modes
 * both lease data blobs carry the one port the device listens on: flannel writes
 * ListenPortV6 into BackendV6Data there, which no device listens on.
 */
import { z } from "zod";
import { type Cidr, type Family, type IpAddr, cidrEquals } from "../../model/ip.js";
import type { DesiredRouting, DesiredTunnelPeer, PeerDecision } from "../../routing/desired.js";
import { parseBackendKeys } from "../parseBackendKeys.js";
import type { BackendSpec, PeerRoute, RawBackend } from "../types.js";

export type WireguardMode = "separate" | "auto" | "ipv4" | "ipv6";

export interface WireguardBackend {
  type: "wireguard";
  listenPort: number;
  listenPortV6: number;
  /** The outer MTU (the underlay's when unset); the device and pods get 80 less. */
  mtu: number | undefined;
  /** A pre-shared key (base64, 32 bytes) for every peer, for post-quantum resistance; never logged. */
  psk: string | undefined;
  /** Seconds between keepalives to each peer (0: off), for peers behind NAT. */
  persistentKeepaliveInterval: number;
  mode: WireguardMode;
}

/** WireGuard's overhead over the outer MTU, as flannel counts it: IPv6 header 40 + UDP 8 + WireGuard 32. */
export const WIREGUARD_OVERHEAD = 80;

/** A WireGuard key as `wg` writes it: 32 bytes, standard base64 (44 characters, one `=`). */
export const WIREGUARD_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

const keys = z
  .object({
    ListenPort: z.number().int().min(1).max(65535).optional(),
    ListenPortV6: z.number().int().min(1).max(65535).optional(),
    MTU: z.number().int().min(1280 + WIREGUARD_OVERHEAD, `must be at least ${1280 + WIREGUARD_OVERHEAD} (the device gets ${WIREGUARD_OVERHEAD} less, and IPv6 needs 1280)`).max(65535).optional(),
    PSK: z.string().regex(WIREGUARD_KEY, "must be a WireGuard key: 32 bytes in base64, as `wg genpsk` prints").optional(),
    PersistentKeepaliveInterval: z.number().int("must be a whole number of seconds").min(0).max(65535).optional(),
    Mode: z.enum(["separate", "auto", "ipv4", "ipv6"], { error: "must be one of separate, auto, ipv4, ipv6" }).optional(),
  })
  .loose();

export function wireguardDeviceName(mode: WireguardMode, family: Family): string {
  return mode === "separate" && family === 6 ? "sluice-wg-v6" : "sluice-wg";
}

/** The port the device carrying this family listens on. */
export function wireguardPort(c: WireguardBackend, family: Family): number {
  return c.mode === "separate" && family === 6 ? c.listenPortV6 : c.listenPort;
}

/** flannel's BackendData for wireguard. */
export interface WireguardLeaseData {
  PublicKey: string;
  Port: number;
}

/** The public key and port in a lease's (V6) backend data, if well-formed. */
export function wireguardDataOf(data: unknown): WireguardLeaseData | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const d = data as Record<string, unknown>;
  const key = d["PublicKey"];
  const port = d["Port"];
  if (typeof key !== "string" || !WIREGUARD_KEY.test(key)) return undefined;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { PublicKey: key, Port: port };
}

export const wireguardSpec: BackendSpec<WireguardBackend> = {
  type: "wireguard",
  secrets: ["psk"],

  parse(raw: RawBackend, source: string): WireguardBackend {
    const k = parseBackendKeys(keys, raw, source);
    return {
      type: "wireguard",
      listenPort: k.ListenPort ?? 51820,
      listenPortV6: k.ListenPortV6 ?? 51821,
      mtu: k.MTU,
      psk: k.PSK,
      persistentKeepaliveInterval: k.PersistentKeepaliveInterval ?? 0,
      mode: k.Mode ?? "separate",
    };
  },

  podMtu: (c, underlayMtu) => (c.mtu ?? underlayMtu) - WIREGUARD_OVERHEAD,

  leaseData(c, local) {
    const out: Partial<Record<Family, WireguardLeaseData>> = {};
    for (const family of [4, 6] as const) {
      const key = local[family];
      if (typeof key === "string") out[family] = { PublicKey: key, Port: wireguardPort(c, family) };
    }
    return out;
  },

  devices: (c) => ({ 4: wireguardDeviceName(c.mode, 4), 6: wireguardDeviceName(c.mode, 6) }),

  encapsulation: (c, family) => ({ port: wireguardPort(c, family), authenticated: true }),

  routePeer(c: WireguardBackend, _ctx, peer: PeerRoute, out: DesiredRouting): PeerDecision {
    const data = wireguardDataOf(peer.data);
    if (!data) {
      const reason = `peer ${peer.name} has no WireGuard PublicKey and Port in its IPv${peer.family} backend data (backend ${peer.backendType || "unknown"})`;
      out.problems.push(reason);
      return { peer: peer.name, via: "skipped", reason };
    }
    const dev = wireguardDeviceName(c.mode, peer.family);
    out.routes.push({ dst: peer.subnet, gateway: undefined, dev, onlink: false, blackhole: false });
    const endpoint = { ip: peer.publicIP, port: data.Port };
    const existing = out.tunnelPeers.find((p) => p.dev === dev && p.publicKey === data.PublicKey);
    if (!existing) {
      // Separate mode, or the first family of a single-device peer: its own endpoint unless the mode wants the other family's.
      const usable = c.mode === "separate" || c.mode === "auto" || (c.mode === "ipv4") === (peer.family === 4);
      out.tunnelPeers.push(tunnelPeer(c, dev, data.PublicKey, usable ? endpoint : undefined, [peer.subnet], peer.name));
    } else {
      // A single-device peer's second family: its subnet joins AllowedIPs; `ipv6` mode takes this endpoint, `auto` keeps IPv4's.
      if (!existing.allowedIps.some((a) => cidrEquals(a, peer.subnet))) existing.allowedIps.push(peer.subnet);
      if (existing.endpoint === undefined || c.mode === "ipv6") existing.endpoint = endpoint;
    }
    return { peer: peer.name, via: "wireguard" };
  },
};

function tunnelPeer(c: WireguardBackend, dev: string, publicKey: string, endpoint: { ip: IpAddr; port: number } | undefined, allowedIps: Cidr[], name: string): DesiredTunnelPeer {
  return { dev, name, publicKey, endpoint, allowedIps, keepaliveSeconds: c.persistentKeepaliveInterval };
}
