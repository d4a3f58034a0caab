/**
 * Where Sluice's own objects live in etcd (etcd mode). Flannel's network config and
 * leases stay under the flannel prefix; everything else is under SLUICE_PREFIX:
 *
 *   <p>/namespaces/<name>                          Namespace (k8s JSON)
 *   <p>/pods/<namespace>/<name>                    Pod (k8s JSON: labels, nodeName, container ports)
 *   <p>/networkpolicies/<namespace>/<name>         NetworkPolicy (k8s JSON)
 *   <p>/workloadendpoints/<node>/<namespace>/<pod>/<ifName>   WorkloadEndpointRecord (written by sluice-cni)
 *
 * Later kinds (ClusterNetworkPolicy, GlobalNetworkPolicy, NetworkSet, ...) follow the same
 * shape: `<p>/<plural>/<name>` when cluster-scoped, `<p>/<plural>/<namespace>/<name>` when
 * namespaced.
 */
export const SLUICE_PREFIX = "/sluice/v1";

export const namespaceKey = (name: string, p = SLUICE_PREFIX): string => `${p}/namespaces/${name}`;
export const podKey = (namespace: string, name: string, p = SLUICE_PREFIX): string => `${p}/pods/${namespace}/${name}`;
export const resourceKey = (plural: string, namespace: string | undefined, name: string, p = SLUICE_PREFIX): string => (namespace === undefined ? `${p}/${plural}/${name}` : `${p}/${plural}/${namespace}/${name}`);
export const workloadEndpointKey = (node: string, namespace: string, pod: string, ifName: string, p = SLUICE_PREFIX): string => `${p}/workloadendpoints/${node}/${namespace}/${pod}/${ifName}`;
export const workloadEndpointPrefix = (node?: string, p = SLUICE_PREFIX): string => (node === undefined ? `${p}/workloadendpoints/` : `${p}/workloadendpoints/${node}/`);
