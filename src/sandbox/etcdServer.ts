/**
 * A real etcd (Debian's etcd-server) for the sandbox and the tests. By default it
 * listens on a unix socket in its state directory: reachable from every network
 * namespace on this host (sockets live in the file system), from none outside it, and
 * it never competes for a TCP port. `tcpPort` adds a loopback listener as well.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Etcd3 } from "etcd3";

export interface EtcdServer {
  /** The endpoint for `--etcd-endpoints` (unix:///... or http://127.0.0.1:port). */
  endpoint: string;
  endpoints: string[];
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

export interface EtcdOptions {
  dir: string;
  tcpPort?: number;
  /** Keep running after this process exits (the sandbox CLI). */
  detached?: boolean;
}

export async function startEtcd(o: EtcdOptions): Promise<EtcdServer> {
  mkdirSync(o.dir, { recursive: true });
  const sock = "etcd.sock:0";
  const clientUrls = [`unix://${sock}`, ...(o.tcpPort ? [`http://127.0.0.1:${o.tcpPort}`] : [])].join(",");
  const args = [
    "--name", "sluice",
    "--data-dir", join(o.dir, "data"),
    "--listen-client-urls", clientUrls,
    "--advertise-client-urls", clientUrls,
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
  const endpoints = [unixEndpoint, ...(o.tcpPort ? [`http://127.0.0.1:${o.tcpPort}`] : [])];
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
  // Ready when it answers a read.
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (existsSync(join(o.dir, sock))) {
      const c = new Etcd3({ hosts: [unixEndpoint], dialTimeout: 1000 });
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
  return { endpoint: endpoints[o.tcpPort ? 1 : 0] as string, endpoints, pid: child.pid ?? 0, dir: o.dir, stop };
}
