/**
 * What a routing backend is (flannel's pkg/backend, in our pure/reconcile split). Each
 * backend lives in its own folder, src/backends/<name>/:
 *
 *   spec.ts    pure: its piece of the Backend config (keys, defaults, errors naming the
 *              key), its MTU rule, the BackendData it puts in this node's lease, what it
 *              reads from a peer's, and the desired kernel state for one peer (routes,
 *              neighbours, FDB), golden-tested (test/golden/backends/);
 *   kernel.ts  the node side: its devices (created, kept across restarts, recognised by
 *              `sluicectl cleanup`) and the local state its lease data comes from.
 *
 * specs.ts and kernels.ts register them: adding a backend is a folder and a line in each.
 * Nothing outside src/backends/ knows a backend's keys, devices or lease data.
 */
import type { Cidr, Family, IpAddr } from "../model/ip.js";
import type { DesiredRouting, PeerDecision } from "../routing/desired.js";

/** A parsed Backend section: the backend's type name and its own settings. */
export interface BackendConfigBase {
  readonly type: string;
}

/** The Backend section as flannel's JSON has it (keys as written; `Type` already lower-cased). */
export type RawBackend = Readonly<Record<string, unknown>>;

/** Per family: what a backend keeps of this node across restarts and publishes in its lease (a VTEP MAC). */
export type LocalBackendState = Readonly<Partial<Record<Family, unknown>>>;

/** One trusted peer of one family, as a backend routes it. */
export interface PeerRoute {
  name: string;
  family: Family;
  subnet: Cidr;
  publicIP: IpAddr;
  /** The peer's lease data of this family (BackendData / BackendV6Data), as the peer wrote it: validate before use. */
  data: unknown;
  /** The peer's BackendType, for messages. */
  backendType: string;
}

/**
 * How peers' encapsulated traffic arrives: UDP to a port (VXLAN, WireGuard), or as its own
 * IP protocol (IPIP). `authenticated`: only a peer's key opens it (WireGuard), so pods may
 * send it; unauthenticated encapsulation no pod may send anywhere.
 */
export type Encapsulation = { protocol?: "udp"; port: number; authenticated?: boolean } | { protocol: "ipencap"; authenticated?: boolean };

/** What the node's side of routing looks like, for a backend's decision. */
export interface RouteContext {
  /** Whether the peer's public address is directly connected on the underlay. */
  onLink(ip: IpAddr): boolean;
}

/** The devices a backend programs routes through, per family (undefined: the kernel's choice, as host-gw). */
export type BackendDevices = Readonly<Partial<Record<Family, string>>>;

export interface BackendSpec<C extends BackendConfigBase = BackendConfigBase> {
  readonly type: C["type"];
  /** The families it carries (default both): a config enabling another is refused, naming the backend. */
  readonly families?: readonly Family[];
  /** The Backend section's keys this backend reads, validated; throws ConfigError naming `Backend.<Key>`. */
  parse(raw: RawBackend, source: string): C;
  /** Its parsed config's keys that hold secrets (WireGuard's PSK): shown redacted by describeBackend. */
  readonly secrets?: readonly (keyof C & string)[];
  /** The MTU pods get on this backend, from the underlay's. */
  podMtu(c: C, underlayMtu: number, ipv6Underlay: boolean): number;
  /** This node's lease data per family (BackendData, BackendV6Data), from its local state; a family without it gets none. */
  leaseData(c: C, local: LocalBackendState): Partial<Record<Family, unknown>>;
  /** The devices its routes go through (the reconciler owns their neighbour and FDB entries). */
  devices(c: C): BackendDevices;
  /** Where peers' encapsulated traffic of this family arrives, for the host rules' underlay trust (src/render/hostRules.ts). */
  encapsulation(c: C, family: Family): Encapsulation | undefined;
  /** Pure: the routes (and neighbours, FDB) for one trusted peer of one family, appended to `out`. */
  routePeer(c: C, ctx: RouteContext, peer: PeerRoute, out: DesiredRouting): PeerDecision;
}
