/**
 * Picks the agent's datastore from its flags: etcd (the default; flannel's --etcd-* flags)
 * or the Kubernetes API (--kube-subnet-mgr, with --kube-api-url / --kubeconfig-file /
 * in-cluster credentials). Either way the agent gets a SubnetManager, a policy feed and
 * (etcd) a publisher of this node's pods, and knows nothing else of the datastore.
 */
import type { Logger } from "pino";
import type { AgentConfig } from "../config/agentConfig.js";
import { connectEtcd } from "../datastore/etcdClient.js";
import { EtcdEndpointPublisher } from "../datastore/etcdEndpointPublisher.js";
import { EtcdSubnetManager } from "../datastore/etcdSubnetManager.js";
import { kubeConfigFrom } from "../datastore/kubeClient.js";
import { KubePolicySource, type LocalEndpointRecords } from "../datastore/kubePolicySource.js";
import { KubeSubnetManager } from "../datastore/kubeSubnetManager.js";
import { PolicySource } from "../datastore/policySource.js";
import type { SubnetManager } from "../datastore/subnetManager.js";
import type { PolicyFeed } from "./policyEngine.js";

/** A policy feed the agent starts (resolves after the first complete list) and stops. */
export interface StartablePolicyFeed extends PolicyFeed {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface EndpointPublisher {
  start(): void;
  stop(): Promise<void>;
}

export interface AgentDatastore {
  readonly kind: "etcd" | "kubernetes";
  readonly subnets: SubnetManager;
  /**
   * The policy feed. `local` is the pod records sluice-cni keeps on this node: the
   * Kubernetes feed takes new local pods' addresses from them (etcd has the records itself).
   */
  policyFeed(local: LocalEndpointRecords): StartablePolicyFeed;
  /**
   * etcd: what publishes `local` as this node's workload endpoints (sluice-cni talks to no
   * datastore); undefined in Kubernetes mode, where the kubelet reports the pods.
   */
  endpointPublisher(local: LocalEndpointRecords): EndpointPublisher | undefined;
  /** Closes the connection; call after the subnet manager and the feed have stopped. */
  close(): Promise<void>;
}

export async function openDatastore(cfg: AgentConfig, log: Logger): Promise<AgentDatastore> {
  if (cfg["kube-subnet-mgr"]) return openKubernetes(cfg, log);
  const etcd = connectEtcd({ endpoints: cfg["etcd-endpoints"], keyFile: cfg["etcd-keyfile"], certFile: cfg["etcd-certfile"], caFile: cfg["etcd-cafile"], username: cfg["etcd-username"], password: cfg["etcd-password"] });
  return {
    kind: "etcd",
    subnets: new EtcdSubnetManager({ client: etcd, prefix: cfg["etcd-prefix"], ttlMs: cfg["subnet-lease-ttl"], renewMarginMs: cfg["subnet-lease-renew-margin"], log }),
    policyFeed: () => new PolicySource({ client: etcd, log, prefix: cfg["resource-prefix"] }),
    endpointPublisher: (local) => new EtcdEndpointPublisher({ client: etcd, log, nodeName: cfg.nodeName, local, prefix: cfg["resource-prefix"], resyncMs: cfg["policy-resync"] }),
    close: async () => etcd.close(),
  };
}

async function openKubernetes(cfg: AgentConfig, log: Logger): Promise<AgentDatastore> {
  const kc = await kubeConfigFrom({ kubeconfigFile: cfg["kubeconfig-file"], apiUrl: cfg["kube-api-url"] });
  log.info({ server: kc.getCurrentCluster()?.server }, "Kubernetes API server");
  return {
    kind: "kubernetes",
    subnets: new KubeSubnetManager({ kc, nodeName: cfg.nodeName, netConfigPath: cfg["net-config-path"], annotationPrefix: cfg["kube-annotation-prefix"], setNodeNetworkUnavailable: cfg["set-node-network-unavailable"], log }),
    policyFeed: (local) => new KubePolicySource({ kc, log, nodeName: cfg.nodeName, localRecords: local }),
    endpointPublisher: () => undefined,
    // The client keeps no connection between requests; the watches end with stop().
    close: async () => undefined,
  };
}
