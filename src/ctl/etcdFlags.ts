/** The datastore flags every sluicectl command that talks to etcd takes. */
import type { FlagSpec } from "../config/flags.js";

export const ETCD_FLAGS: FlagSpec[] = [
  { name: "etcd-endpoints", kind: "string", help: "comma-separated etcd endpoints", default: "http://127.0.0.1:2379" },
  { name: "etcd-prefix", kind: "string", help: "etcd prefix", default: "/coreos.com/network" },
  { name: "etcd-cafile", kind: "string", help: "TLS CA file" },
  { name: "etcd-certfile", kind: "string", help: "TLS certificate file" },
  { name: "etcd-keyfile", kind: "string", help: "TLS key file" },
  { name: "etcd-username", kind: "string", help: "etcd username" },
  { name: "etcd-password", kind: "string", help: "etcd password" },
];
