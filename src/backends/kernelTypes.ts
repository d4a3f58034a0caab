/**
 * The node side of a backend (src/backends/<name>/kernel.ts): the devices it needs and
 * the local state its lease data comes from. Registered in kernels.ts beside specs.ts.
 */
import type { Logger } from "pino";
import type { LinkInfo, Netlink } from "../dataplane/netlink.js";
import type { Underlay } from "../dataplane/underlay.js";
import type { Family, IpAddr } from "../model/ip.js";
import type { Lease } from "../model/lease.js";
import type { NetworkConfig } from "../config/networkConfig.js";
import type { DesiredTunnelPeer } from "../routing/desired.js";
import type { BackendConfigBase, BackendDevices, LocalBackendState } from "./types.js";

/** What the agent resolved at start that a backend's devices are made of. */
export interface BackendNode {
  nl: Netlink;
  log: Logger;
  network: NetworkConfig;
  underlay: Underlay;
  publicIP: Readonly<Partial<Record<Family, IpAddr>>>;
}

export interface BackendKernel<C extends BackendConfigBase = BackendConfigBase> {
  /**
   * At start, per enabled family: what this node keeps across restarts and publishes in
   * its lease (vxlan: the VTEP MAC, the existing device's, else the previous lease's data
   * `previous`, else a new one).
   */
  resolveLocal(c: C, node: BackendNode, previous: Readonly<Partial<Record<Family, unknown>>>): Promise<LocalBackendState>;
  /** Before each routes reconcile: the devices exist as configured (created, repaired); returns those in use, per family. */
  ensureDevices(c: C, node: BackendNode, lease: Lease, mtu: number, local: LocalBackendState): Promise<BackendDevices>;
  /** After ensureDevices, before routes: a keyed tunnel's peers (WireGuard) made to match the desired ones on the devices in use; returns how many changed. */
  reconcilePeers?(c: C, node: BackendNode, peers: readonly DesiredTunnelPeer[], devices: BackendDevices): Promise<number>;
  /** `sluicectl cleanup`: whether a link is one of this backend's devices (found by name and kind, so it works after a crash). */
  ownsLink(link: LinkInfo): boolean;
}
