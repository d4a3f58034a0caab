/** Builds an etcd3 client from the agent's flannel-style etcd flags. */
import { readFileSync } from "node:fs";
import { Etcd3, type IOptions } from "etcd3";

export interface EtcdConnection {
  endpoints: string[];
  keyFile?: string | undefined;
  certFile?: string | undefined;
  caFile?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** How long a call may wait for a connection (default 3000 ms). */
  dialTimeoutMs?: number | undefined;
}

export function connectEtcd(c: EtcdConnection): Etcd3 {
  const options: IOptions = {
    hosts: c.endpoints,
    // Fail fast per call; the callers own retries and back-off.
    dialTimeout: c.dialTimeoutMs ?? 3000,
    // grpc-js refuses responses over 4 MiB by default: listing ~4 000 pods with their endpoints is more.
    grpcOptions: { "grpc.max_receive_message_length": -1 },
  };
  if (c.caFile || c.certFile) {
    options.credentials = {
      rootCertificate: c.caFile ? readFileSync(c.caFile) : Buffer.alloc(0),
      ...(c.keyFile ? { privateKey: readFileSync(c.keyFile) } : {}),
      ...(c.certFile ? { certChain: readFileSync(c.certFile) } : {}),
    };
  }
  if (c.username) options.auth = { username: c.username, password: c.password ?? "" };
  return new Etcd3(options);
}
