/**
 * The routes concern: the backend's devices (src/backends/<name>/kernel.ts), routes,
 * neighbour and FDB entries towards the peers (src/dataplane/routeReconciler.ts), and what the filter
 * table needs to know of them: which peers the underlay rules trust, and whether kube-proxy
 * runs in IPVS mode (kube-ipvs0, looked for on every routes apply when policy is on).
 */
import type { Logger } from "pino";
import { kernelOf } from "../backends/kernels.js";
import { specOf } from "../backends/specs.js";
import type { BackendDevices, Encapsulation } from "../backends/types.js";
import type { Netlink } from "../dataplane/netlink.js";
import { reconcileRouting } from "../dataplane/routeReconciler.js";
import { type Family, formatCidr, formatIp } from "../model/ip.js";
import type { Lease } from "../model/lease.js";
import type { UnderlayTrust } from "../render/hostRules.js";
import { KUBE_IPVS_DEVICE } from "../render/kubeIpvs.js";
import { computeRouting } from "../routing/backends.js";
import type { TrustedPeer } from "../routing/desired.js";
import { leaseToPeer } from "./peers.js";
import type { AgentRuntime } from "./runtime.js";

/** What the routes apply tells the host rules. The keys compare two of them. */
export interface RoutingOutcome {
  /** Per family, where peers' traffic arrives and which peers are known. */
  readonly trust: ReadonlyMap<Family, UnderlayTrust>;
  readonly trustKey: string;
  /** kube-ipvs0's addresses (the Service addresses) while it exists. */
  readonly kubeIpvs: readonly string[] | undefined;
  readonly kubeIpvsKey: string;
}

export class RouteManager {
  private lastRefused = "";
  private kubeIpvs: string[] | undefined;
  private kubeIpvsKey = "";

  constructor(private readonly rt: AgentRuntime) {}

  async apply(lease: Lease, mtu: number): Promise<RoutingOutcome> {
    const { rt } = this;
    const { network, underlay, nl, log } = rt;
    const backend = network.backend;
    const spec = specOf(backend);
    const kernel = kernelOf(backend);
    const devices = await kernel.ensureDevices(backend, rt.backendNode, lease, mtu, rt.backendLocal);
    if (rt.policyEnabled) await this.detectKubeIpvs(nl, log);
    const peers = rt.subnets.peers().map(leaseToPeer);
    const desired = computeRouting(
      { backend, subnet: lease.subnet, subnet6: lease.subnet6, publicIP: rt.publicIP, publicIPv6: rt.publicIPv6, onLinkNetworks: underlay.onLinkNetworks, blackholeRoute: rt.cfg["ip-blackhole-route"], network: network.ipv4?.network, network6: network.ipv6?.network },
      peers,
    );
    for (const p of desired.problems) log.error({ problem: p }, "peer not programmed");
    const refused = desired.refused.join("\n");
    if (refused !== this.lastRefused) for (const r of desired.refused) log.warn({ refused: r }, "peer refused");
    this.lastRefused = refused;
    const trust = underlayTrustOf(desired.trusted, underlay.name, (family) => spec.encapsulation(backend, family), devices);
    if (kernel.reconcilePeers) await kernel.reconcilePeers(backend, rt.backendNode, desired.tunnelPeers, devices);
    const counts = await reconcileRouting(nl, desired, Object.values(devices), log);
    if (Object.values(counts).some((n) => n > 0)) log.info({ ...counts, peers: desired.decisions }, "routing reconciled");
    return { trust, trustKey: trustKey(trust), kubeIpvs: this.kubeIpvs, kubeIpvsKey: this.kubeIpvsKey };
  }

  /**
   * kube-proxy in IPVS mode puts Service addresses on kube-ipvs0; while that device exists,
   * Service traffic's INPUT -> OUTPUT path is policed (src/render/kubeIpvs.ts). Looked for
   * at start and on every routes apply (no link watch: a change shows within one route
   * resync, and a failed look keeps the last answer). A change applies the filter table at once.
   */
  private async detectKubeIpvs(nl: Netlink, log: Logger): Promise<void> {
    const link = await nl.linkByName(KUBE_IPVS_DEVICE);
    // Its addresses are the Service addresses: a pod's packet to one is judged in OUTPUT, not as traffic to this host.
    const found = link === undefined ? undefined : (await nl.addresses()).filter((a) => a.index === link.index).map((a) => formatIp(a.address)).sort();
    const key = found === undefined ? "" : `on|${found.join(",")}`;
    if (key === this.kubeIpvsKey) return;
    const was = this.kubeIpvs !== undefined;
    this.kubeIpvs = found;
    this.kubeIpvsKey = key;
    if (found && !was) log.info({ device: KUBE_IPVS_DEVICE, services: found.length }, "kube-proxy runs in IPVS mode: Service traffic through INPUT and OUTPUT gets the endpoint chains");
    else if (found) log.debug({ device: KUBE_IPVS_DEVICE, services: found.length }, "kube-ipvs0 addresses changed");
    else log.info({ device: KUBE_IPVS_DEVICE }, "kube-proxy IPVS device gone: its INPUT/OUTPUT path rules are removed");
  }
}

/** Per family: where peers' traffic arrives (underlay interface, the family's tunnel device if any) and which peers are known. */
function underlayTrustOf(trusted: readonly TrustedPeer[], iface: string, encapOf: (family: Family) => Encapsulation | undefined, devices: BackendDevices): ReadonlyMap<Family, UnderlayTrust> {
  const out = new Map<Family, UnderlayTrust>();
  for (const family of [4, 6] as const) {
    const device = devices[family];
    const encap = encapOf(family);
    out.set(family, { iface, tunnel: device !== undefined && encap !== undefined ? { device, ...encap } : undefined, peers: trusted.filter((p) => p.family === family) });
  }
  return out;
}

function trustKey(t: ReadonlyMap<Family, UnderlayTrust>): string {
  return JSON.stringify([...t].map(([f, u]) => [f, u.iface, u.tunnel ?? null, u.peers.map((p) => `${formatIp(p.publicIP)} ${formatCidr(p.subnet)}`).sort()]));
}
