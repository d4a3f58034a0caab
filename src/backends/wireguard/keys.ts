/**
 * This node's WireGuard key pair. The private key lives in a file (flannel keeps it in
 * /run/flannel/wgkey; ours is SLUICE_WIREGUARD_KEY_FILE, else flannel's WIREGUARD_KEY_FILE,
 * else /run/sluice/wgkey) so that a restarted agent publishes the same public key and
 * peers keep their sessions. The file holds `wg genkey`'s format: base64, 0400.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { writeFileAtomic } from "../../agent/subnetEnv.js";
import { WIREGUARD_KEY } from "./spec.js";

export const DEFAULT_KEY_FILE = "/run/sluice/wgkey";

export function keyFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env["SLUICE_WIREGUARD_KEY_FILE"] || env["WIREGUARD_KEY_FILE"] || DEFAULT_KEY_FILE;
}

// PKCS#8 wrapping of a raw X25519 private key (RFC 8410): node:crypto imports keys in it.
const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

/** The public key of a base64 private key, as `wg pubkey` prints it. */
export function publicKeyOf(privateKey: string): string {
  const raw = Buffer.from(privateKey, "base64");
  if (raw.length !== 32) throw new Error("a WireGuard private key is 32 bytes in base64");
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: "der", type: "pkcs8" });
  const jwk = createPublicKey(key).export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new Error("node:crypto gave no X25519 public key");
  return Buffer.from(jwk.x, "base64url").toString("base64");
}

export function generatePrivateKey(): string {
  const { privateKey } = generateKeyPairSync("x25519");
  const jwk = privateKey.export({ format: "jwk" });
  if (typeof jwk.d !== "string") throw new Error("node:crypto gave no X25519 private key");
  return Buffer.from(jwk.d, "base64url").toString("base64");
}

/** Reads the key file; undefined if there is none. A file that holds no key is an error naming it (never silently replaced: peers know its public key). */
export function readPrivateKey(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`cannot read the WireGuard key file ${path}: ${(err as Error).message}`);
  }
  if (!WIREGUARD_KEY.test(text)) throw new Error(`the WireGuard key file ${path} holds no key (expected 44 base64 characters, as \`wg genkey\` prints); remove it to get a new key pair`);
  return text;
}

/** Writes a key file (the private key, the PSK) atomically, readable by root only; its directory 0755 as flannel's. */
export async function writeKeyFile(path: string, key: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  await writeFileAtomic(path, key, 0o400);
}
