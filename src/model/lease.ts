/**
 * A node's subnet lease, as flannel lays it out in etcd: the key names the subnet(s),
 * the value (LeaseAttrs) carries the node's public address and backend data.
 */
import type { Cidr, IpAddr } from "./ip.js";

/** The lease value, JSON field names as flannel writes them. */
export interface LeaseAttrs {
  PublicIP: string;
  PublicIPv6?: string;
  BackendType: string;
  /** The backend's own data per family (src/backends/<name>/spec.ts says what; a VTEP MAC for vxlan). */
  BackendData?: unknown;
  BackendV6Data?: unknown;
  /** Sluice addition (flannel ignores unknown fields): the node's name, for display. */
  NodeName?: string;
}

export interface Lease {
  /** The IPv4 subnet; absent for an IPv6-only lease. */
  subnet: Cidr | undefined;
  subnet6: Cidr | undefined;
  attrs: LeaseAttrs;
  publicIP: IpAddr | undefined;
  publicIPv6: IpAddr | undefined;
  /** The etcd lease id (0 = no TTL: a reservation), and when it expires if known. */
  leaseId: string;
  expiration: Date | undefined;
  /** The etcd key revision at which we saw this value; for compare-and-swap. */
  modRevision: string;
}

/** A peer as the routing backends see it. */
export interface Peer {
  name: string;
  subnet: Cidr | undefined;
  subnet6: Cidr | undefined;
  publicIP: IpAddr | undefined;
  publicIPv6: IpAddr | undefined;
  backendType: string;
  /** Its lease's BackendData and BackendV6Data, unvalidated: its backend's spec reads them. */
  data: unknown;
  data6: unknown;
}
