/** A real etcd for a test: loopback TCP on a free port, data in a temp dir, removed afterwards. */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { startEtcd, type EtcdServer } from "../../src/sandbox/etcdServer.js";

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
  stop(): Promise<void>;
}

export async function startTestEtcd(): Promise<TestEtcd> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-etcd-"));
  const server = await startEtcd({ dir, tcpPort: await freePort() });
  const client = new Etcd3({ hosts: [server.endpoint] });
  return {
    server,
    client,
    stop: async () => {
      client.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
