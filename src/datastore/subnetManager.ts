/**
 * What the agent needs of a datastore for connectivity, whichever holds the subnets:
 * etcd (leases under `<prefix>/subnets`, flannel's layout) or the Kubernetes API
 * (`node.spec.podCIDR(s)` and node annotations, flannel's kube subnet manager). The agent
 * knows only this interface; nothing downstream knows which datastore is in use.
 *
 * Events: "changed" (lease, old) when this node's own lease was replaced (etcd: lost and
 * re-acquired; Kubernetes: podCIDR changed, which should not happen); "peers" whenever
 * the set of peer leases changed (the agent then reads peers()).
 */
import type { EventEmitter } from "node:events";
import type { NetworkConfig } from "../config/networkConfig.js";
import type { Cidr, IpAddr } from "../model/ip.js";
import type { Lease, LeaseAttrs } from "../model/lease.js";

export interface SubnetChoiceHint {
  subnet: Cidr | undefined;
  subnet6: Cidr | undefined;
}

export interface AcquireOptions {
  /** This node's public addresses (the underlay). */
  publicIP: IpAddr | undefined;
  publicIPv6: IpAddr | undefined;
  /** The lease attributes to publish (PublicIP, BackendType, BackendData with the VTEP MAC, NodeName); called on every (re)publish. */
  attrs: () => LeaseAttrs;
  /** The subnets of the last subnet.env, preferred when free (etcd mode). */
  previous: SubnetChoiceHint | undefined;
}

export interface SubnetManager extends EventEmitter {
  readonly kind: "etcd" | "kubernetes";
  /**
   * The cluster network config: etcd `<prefix>/config`, or the net-conf.json file in
   * Kubernetes mode (flannel's keys either way). Retries while the datastore is
   * unreachable; throws a ConfigError at once for a bad config.
   */
  networkConfig(): Promise<NetworkConfig>;
  /**
   * The attributes this node published before (its old lease or node annotations), so a
   * restarted node keeps its VTEP MAC; undefined when there are none.
   */
  previousAttrs(publicIP: IpAddr | undefined, publicIPv6: IpAddr | undefined): Promise<LeaseAttrs | undefined>;
  /**
   * Takes this node's lease (etcd: allocate/renew a subnet; Kubernetes: read podCIDRs,
   * failing with a clear error when none is assigned, and publish the attrs as node
   * annotations) and keeps it (renewal, re-acquisition). Resolves with the lease.
   */
  acquire(o: AcquireOptions): Promise<Lease>;
  /** This node's lease, once acquired. */
  readonly lease: Lease | undefined;
  /** False while the lease is lost or cannot be renewed. */
  readonly healthy: boolean;
  /** Lists and watches the peers (relisting on its own after errors); resolves after the first list. */
  startPeerWatch(): Promise<void>;
  /** Every node's current lease, this node's included (the routing backends skip their own). */
  peers(): Lease[];
  /** Called once the node's dataplane is ready: Kubernetes sets NetworkUnavailable=False; etcd does nothing. */
  markReady(): Promise<void>;
  /** Stops watching and renewing; leaves the lease (and node annotations) in place so a restart loses nothing. */
  stop(): Promise<void>;
}
