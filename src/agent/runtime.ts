/**
 * What the agent resolves once at start and never changes afterwards: its config and node
 * name, the datastore handles, the cluster network config and its families, the underlay
 * and this node's public addresses, its backend's local state (the VTEP MACs), the iptables mode and capabilities
 * (HostRules), and the files it shares with the node. The managers and the apply read it;
 * only the lease, the peers and the policy data change while the agent runs.
 */
import type { Logger } from "pino";
import type { BackendNode } from "../backends/kernelTypes.js";
import { kernelOf } from "../backends/kernels.js";
import { specOf } from "../backends/specs.js";
import type { LocalBackendState } from "../backends/types.js";
import type { AgentConfig } from "../config/agentConfig.js";
import type { NetworkConfig } from "../config/networkConfig.js";
import type { SubnetManager } from "../datastore/subnetManager.js";
import { Netlink } from "../dataplane/netlink.js";
import { ensureSysctl } from "../dataplane/sysctl.js";
import { type Underlay, chooseUnderlay } from "../dataplane/underlay.js";
import { type Family, type IpAddr, formatIp, parseIp } from "../model/ip.js";
import type { LeaseAttrs } from "../model/lease.js";
import { type AgentDatastore, openDatastore } from "./datastores.js";
import { HostRules } from "./hostRules.js";
import { readSubnetEnv } from "./subnetEnv.js";

export interface AgentRuntime {
  readonly cfg: AgentConfig;
  readonly log: Logger;
  readonly nodeName: string;
  readonly policyEnabled: boolean;
  readonly datastore: AgentDatastore;
  readonly subnets: SubnetManager;
  readonly network: NetworkConfig;
  /** The families the cluster network has a pool for. */
  readonly families: readonly Family[];
  readonly nl: Netlink;
  readonly underlay: Underlay;
  readonly publicIP: IpAddr | undefined;
  readonly publicIPv6: IpAddr | undefined;
  /** What the backend keeps of this node across restarts and publishes in its lease (vxlan: the VTEP MACs). */
  readonly backendLocal: LocalBackendState;
  /** What the backend's devices are made of. */
  readonly backendNode: BackendNode;
  /** The iptables mode, its capabilities and the per-family dataplanes. */
  readonly hostRules: HostRules;
  readonly paths: { readonly subnetFile: string; readonly dockerOptsFile: string | undefined; readonly cniDataDir: string };
}

/** What was opened so far, closed in reverse order at stop (also when start failed half-way). */
export type Closers = Array<() => Promise<void> | void>;

/**
 * Resolves the runtime: forwarding on, datastore opened, network config read (waits while
 * there is none), underlay chosen, the backend's local state kept from the previous run, lease acquired,
 * iptables probed. Everything opened is pushed onto `closers`.
 */
export async function resolveRuntime(cfg: AgentConfig, log: Logger, closers: Closers): Promise<AgentRuntime> {
  if (await ensureSysctl("net/ipv4/ip_forward", "1")) log.info("IPv4 forwarding was off; turned it on (net.ipv4.ip_forward=1)");
  else log.info("IPv4 forwarding is on");

  const datastore = await openDatastore(cfg, log);
  closers.push(() => datastore.close());
  const subnets = datastore.subnets;
  closers.push(() => subnets.stop());
  log.info({ datastore: datastore.kind, node: cfg.nodeName }, "datastore chosen");
  const network = await subnets.networkConfig();
  if (network.enableIPv6 && (await ensureSysctl("net/ipv6/conf/all/forwarding", "1"))) log.info("IPv6 forwarding was off; turned it on");

  const nl = new Netlink();
  closers.push(() => nl.close());
  const underlay = await chooseUnderlay(nl, { iface: cfg.iface, ifaceRegex: cfg["iface-regex"], ifaceCanReach: cfg["iface-can-reach"] });
  const publicIP = cfg["public-ip"] ? parseIp(cfg["public-ip"]) : underlay.ipv4;
  const publicIPv6 = cfg["public-ipv6"] ? parseIp(cfg["public-ipv6"]) : underlay.ipv6;
  if (network.enableIPv4 && !publicIP) throw new Error(`interface ${underlay.name} has no IPv4 address; set --public-ip or --iface`);
  if (network.enableIPv6 && !publicIPv6) throw new Error(`interface ${underlay.name} has no IPv6 address; set --public-ipv6 or --iface`);
  log.info({ iface: underlay.name, publicIP: publicIP && formatIp(publicIP), publicIPv6: publicIPv6 && formatIp(publicIPv6), mtu: underlay.mtu, backend: network.backend.type }, "using inter-node interface");

  const backendNode: BackendNode = { nl, log, network, underlay, publicIP: { ...(publicIP ? { 4: publicIP } : {}), ...(publicIPv6 ? { 6: publicIPv6 } : {}) } };
  const own = await subnets.previousAttrs(publicIP, publicIPv6);
  const backendLocal = await kernelOf(network.backend).resolveLocal(network.backend, backendNode, { 4: own?.BackendData, 6: own?.BackendV6Data });
  const attrs = leaseAttrs(network, cfg.nodeName, publicIP, publicIPv6, backendLocal);
  const previous = await readSubnetEnv(cfg["subnet-file"]);
  await subnets.acquire({ publicIP, publicIPv6, attrs: () => attrs, previous: previous ? { subnet: previous.subnet, subnet6: previous.ipv6Subnet } : undefined });

  const hostRules = await HostRules.create(cfg, log, network.enableNFTables);
  return Object.freeze({
    cfg,
    log,
    nodeName: cfg.nodeName,
    policyEnabled: cfg["enable-policy"],
    datastore,
    subnets,
    network,
    families: [...(network.ipv4 ? [4 as const] : []), ...(network.ipv6 ? [6 as const] : [])],
    nl,
    underlay,
    publicIP,
    publicIPv6,
    backendLocal,
    backendNode,
    hostRules,
    paths: { subnetFile: cfg["subnet-file"], dockerOptsFile: cfg["docker-opts-file"], cniDataDir: cfg["cni-data-dir"] },
  });
}

function leaseAttrs(network: NetworkConfig, nodeName: string, publicIP: IpAddr | undefined, publicIPv6: IpAddr | undefined, local: LocalBackendState): LeaseAttrs {
  const attrs: LeaseAttrs = { PublicIP: publicIP ? formatIp(publicIP) : "", BackendType: network.backend.type, NodeName: nodeName };
  if (publicIPv6) attrs.PublicIPv6 = formatIp(publicIPv6);
  const data = specOf(network.backend).leaseData(network.backend, local);
  if (data[4] !== undefined) attrs.BackendData = data[4];
  if (data[6] !== undefined) attrs.BackendV6Data = data[6];
  return attrs;
}
