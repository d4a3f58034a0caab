/**
 * A real etcd (Debian's etcd-server) for the sandbox and the tests, with client-certificate
 * TLS (pki.ts makes a throwaway CA per state directory): every client, the sandbox's own
 * included, presents the client certificate, so the authenticated path is the one that is
 * exercised. By default it listens on a unix socket in its state directory (`unixs://`, TLS
 * over the socket): reachable from every network namespace on this host (sockets live in
 * the file system), from none outside it, and it never competes for a TCP port. `tcpPort`
 * adds a loopback listener (https) as well.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type EtcdConnection, connectEtcd } from "../datastore/etcdClient.js";
import { type EtcdClientTls, ensureEtcdPki } from "./pki.js";

export interface EtcdServer {
  /** The endpoint for `--etcd-endpoints` (unix:///... or https://localhost:port). */
  endpoint: string;
  endpoints: string[];
  pid: number;
  dir: string;
  /** The client certificate every client presents (--etcd-cafile, --etcd-certfile, --etcd-keyfile). */
  tls: EtcdClientTls;
  stop(): Promise<void>;
}

export interface EtcdOptions {
  dir: string;
  tcpPort?: number;
  /** Keep running after this process exits (the sandbox CLI). */
  detached?: boolean;
}

/** How a client reaches this etcd (connectEtcd's input): one endpoint and the client certificate. */
export function etcdConnection(server: Pick<EtcdServer, "endpoint" | "tls">, endpoint: string = server.endpoint): EtcdConnection {
  return { endpoints: [endpoint], caFile: server.tls.caFile, certFile: server.tls.certFile, keyFile: server.tls.keyFile };
}

/** The same as flags of sluice-agent and sluicectl. */
export function etcdFlags(server: Pick<EtcdServer, "endpoint" | "tls">, endpoint: string = server.endpoint): string[] {
  return ["--etcd-endpoints", endpoint, "--etcd-cafile", server.tls.caFile, "--etcd-certfile", server.tls.certFile, "--etcd-keyfile", server.tls.keyFile];
}

export async function startEtcd(o: EtcdOptions): Promise<EtcdServer> {
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const pki = await ensureEtcdPki(join(o.dir, "pki"));
  const sock = "etcd.sock:0";
  const clientUrls = [`unixs://${sock}`, ...(o.tcpPort ? [`https://127.0.0.1:${o.tcpPort}`] : [])].join(",");
  const args = [
    "--name", "sluice",
    "--data-dir", join(o.dir, "data"),
    "--listen-client-urls", clientUrls,
    "--advertise-client-urls", clientUrls,
    "--cert-file", pki.server.certFile,
    "--key-file", pki.server.keyFile,
    "--trusted-ca-file", pki.server.caFile,
    "--client-cert-auth",
    // One member, its peer socket in the 0700 state directory: no peer traffic to protect.
    "--listen-peer-urls", "unix://peer.sock:0",
    "--initial-advertise-peer-urls", "unix://peer.sock:0",
    "--initial-cluster", "sluice=unix://peer.sock:0",
    "--log-level", "warn",
  ];
  const logFd = openSync(join(o.dir, "etcd.log"), "a");
  const child: ChildProcess = spawn("etcd", args, { cwd: o.dir, stdio: ["ignore", logFd, logFd], detached: o.detached ?? false });
  closeSync(logFd);
  if (o.detached) child.unref();
  writeFileSync(join(o.dir, "etcd.pid"), String(child.pid));
  const unixEndpoint = `unix://${join(o.dir, sock)}`;
  // "localhost", not 127.0.0.1: the TLS server name must be a host name (RFC 6066), and the certificate names both.
  const endpoints = [unixEndpoint, ...(o.tcpPort ? [`https://localhost:${o.tcpPort}`] : [])];
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 3000).unref();
    });
  };
  const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`etcd exited early (code ${code}); see ${join(o.dir, "etcd.log")}`))));
  exited.catch(() => undefined);
  // Ready when it answers a read over TLS with the client certificate.
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (existsSync(join(o.dir, sock))) {
      const c = connectEtcd({ ...etcdConnection({ endpoint: unixEndpoint, tls: pki.client }), dialTimeoutMs: 1000 });
      try {
        await Promise.race([c.get("/ping").string(), exited]);
        c.close();
        break;
      } catch (err) {
        c.close();
        if (child.exitCode !== null) throw err;
      }
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`etcd did not become ready within 20s; see ${join(o.dir, "etcd.log")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { endpoint: endpoints[o.tcpPort ? 1 : 0] as string, endpoints, pid: child.pid ?? 0, dir: o.dir, tls: pki.client, stop };
}
