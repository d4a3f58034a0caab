/**
 * A real etcd for a test: client-certificate TLS (as the sandbox's: src/sandbox/pki.ts),
 * loopback TCP on a free port plus its unix socket, data in a temp dir, removed afterwards.
 * Every client (the test's, the agents', sluicectl's) presents the client certificate.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { type EtcdConnection, connectEtcd } from "../../src/datastore/etcdClient.js";
import { type EtcdServer, etcdConnection, etcdFlags, startEtcd } from "../../src/sandbox/etcdServer.js";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface TestEtcd {
  server: EtcdServer;
  client: Etcd3;
  /** connectEtcd's input for `endpoint` (default: the TCP endpoint). */
  connection(endpoint?: string): EtcdConnection;
  /** --etcd-endpoints and the certificate flags, for sluice-agent and sluicectl. */
  flags(endpoint?: string): string[];
  stop(): Promise<void>;
}

export async function startTestEtcd(): Promise<TestEtcd> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-etcd-"));
  const server = await startEtcd({ dir, tcpPort: await freePort() });
  const client = connectEtcd(etcdConnection(server));
  return {
    server,
    client,
    connection: (endpoint) => etcdConnection(server, endpoint),
    flags: (endpoint) => etcdFlags(server, endpoint),
    stop: async () => {
      client.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
