/**
 * A throwaway certificate authority for one sandbox (or test) etcd, made with `openssl`:
 * a CA, a server certificate (for localhost and 127.0.0.1, over the unix socket or TCP)
 * and one client certificate that every client of that etcd presents (agents, sluicectl,
 * the sandbox itself, the tests). etcd runs with --client-cert-auth, so the authenticated
 * path is the one the sandbox and the tests exercise; nothing reaches that etcd without
 * the client key, which lives in the 0700 state directory.
 *
 * The CA's private key is deleted once both certificates are signed: nobody, root on this
 * host included, can mint another certificate that etcd would trust. A directory that
 * already holds the certificates (etcd restarted on the same data) is used as it is.
 * Not for production clusters: those bring their own CA.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../dataplane/exec.js";

/** What a client needs (the agent's --etcd-cafile/--etcd-certfile/--etcd-keyfile). */
export interface EtcdClientTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface EtcdPki {
  client: EtcdClientTls;
  /** etcd's --trusted-ca-file, --cert-file, --key-file. */
  server: { caFile: string; certFile: string; keyFile: string };
}

/** The certificates live this long: a sandbox kept with --keep may run for weeks. */
const VALID_DAYS = "365";
const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function openssl(args: readonly string[]): Promise<void> {
  let r;
  try {
    r = await run("openssl", args);
  } catch (err) {
    throw new Error(`the sandbox's etcd runs with TLS and needs openssl (apt-get install openssl, or ./scripts/setup.sh): ${(err as Error).message}`);
  }
  if (r.code !== 0) throw new Error(`openssl ${args[0]} failed (exit ${r.code}): ${r.stderr.trim()}`);
}

export const pkiPaths = (dir: string): EtcdPki => ({
  client: { caFile: join(dir, "ca.crt"), certFile: join(dir, "client.crt"), keyFile: join(dir, "client.key") },
  server: { caFile: join(dir, "ca.crt"), certFile: join(dir, "server.crt"), keyFile: join(dir, "server.key") },
});

/** Makes (or finds) the CA, server and client certificates in `dir` (created 0700). */
export async function ensureEtcdPki(dir: string): Promise<EtcdPki> {
  const paths = pkiPaths(dir);
  const all = [paths.client.caFile, paths.client.certFile, paths.client.keyFile, paths.server.certFile, paths.server.keyFile];
  if (all.every((f) => existsSync(f))) return paths;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const caKey = join(dir, "ca.key");
  const f = (name: string): string => join(dir, name);
  try {
    await openssl(["req", "-x509", ...EC, "-keyout", caKey, "-out", paths.client.caFile, "-days", VALID_DAYS, "-subj", "/CN=sluice sandbox etcd CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    const issue = async (name: string, cn: string, ext: string): Promise<void> => {
      writeFileSync(f(`${name}.ext`), ext);
      await openssl(["req", ...EC, "-keyout", f(`${name}.key`), "-out", f(`${name}.csr`), "-subj", `/CN=${cn}`]);
      await openssl(["x509", "-req", "-in", f(`${name}.csr`), "-CA", paths.client.caFile, "-CAkey", caKey, "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-days", VALID_DAYS, "-out", f(`${name}.crt`), "-extfile", f(`${name}.ext`)]);
      chmodSync(f(`${name}.key`), 0o600);
    };
    await issue("server", "sluice-sandbox-etcd", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyAgreement\n");
    await issue("client", "sluice-sandbox-client", "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyAgreement\n");
  } finally {
    for (const leftover of [caKey, f("server.csr"), f("server.ext"), f("client.csr"), f("client.ext")]) rmSync(leftover, { force: true });
  }
  return paths;
}
