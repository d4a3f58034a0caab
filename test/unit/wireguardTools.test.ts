/** The WireGuard backend's key handling and `wg show dump` parsing, checked against wireguard-tools itself where it is installed. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generatePrivateKey, keyFilePath, publicKeyOf, readPrivateKey, writeKeyFile } from "../../src/backends/wireguard/keys.js";
import { WIREGUARD_KEY } from "../../src/backends/wireguard/spec.js";
import { parseWgDump } from "../../src/backends/wireguard/wgTool.js";

const hasWg = ((): boolean => {
  try {
    execFileSync("wg", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

describe("wireguard keys", () => {
  test("a generated key is wg's format, and its public key is the one `wg pubkey` derives", { skip: hasWg ? false : "wireguard-tools (wg) not installed" }, () => {
    for (let i = 0; i < 5; i++) {
      const key = generatePrivateKey();
      assert.match(key, WIREGUARD_KEY);
      assert.equal(publicKeyOf(key), execFileSync("wg", ["pubkey"], { input: key }).toString().trim());
    }
    const fromWg = execFileSync("wg", ["genkey"]).toString().trim();
    assert.equal(publicKeyOf(fromWg), execFileSync("wg", ["pubkey"], { input: fromWg }).toString().trim());
  });

  test("the key file: written 0400, read back (a trailing newline as from `wg genkey > file` too), garbage refused by name", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-wgkey-"));
    try {
      const path = join(dir, "sub", "wgkey");
      assert.equal(readPrivateKey(path), undefined);
      const key = generatePrivateKey();
      await writeKeyFile(path, key);
      assert.equal(statSync(path).mode & 0o777, 0o400);
      assert.equal(readFileSync(path, "utf8"), key, "no trailing newline, as flannel writes it");
      assert.equal(readPrivateKey(path), key);
      const other = join(dir, "genkey");
      writeFileSync(other, `${key}\n`);
      assert.equal(readPrivateKey(other), key);
      writeFileSync(other, "not a key\n");
      assert.throws(() => readPrivateKey(other), new RegExp(`the WireGuard key file ${other} holds no key`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the key file's path: ours, else flannel's variable, else /run/sluice/wgkey", () => {
    assert.equal(keyFilePath({ SLUICE_WIREGUARD_KEY_FILE: "/a", WIREGUARD_KEY_FILE: "/b" }), "/a");
    assert.equal(keyFilePath({ WIREGUARD_KEY_FILE: "/b" }), "/b");
    assert.equal(keyFilePath({}), "/run/sluice/wgkey");
  });
});

describe("wg show dump", () => {
  test("the device line and each peer's key, PSK, endpoint, AllowedIPs and keepalive", () => {
    const k = (n: number): string => Buffer.alloc(32, n).toString("base64");
    const text = [
      [k(1), k(2), "51820", "off"].join("\t"),
      [k(3), "(none)", "10.250.1.12:51820", "10.244.2.0/24", "0", "0", "0", "off"].join("\t"),
      [k(4), k(9), "[fd00:250:1::13]:51821", "fd00:244:0:3::/64,10.244.3.0/24", "1733380000", "1200", "800", "25"].join("\t"),
      [k(5), "(none)", "(none)", "(none)", "0", "0", "0", "off"].join("\t"),
      "",
    ].join("\n");
    const d = parseWgDump(text);
    assert.equal(d.privateKey, k(1));
    assert.equal(d.listenPort, 51820);
    assert.deepEqual([...d.peers.keys()], [k(3), k(4), k(5)]);
    assert.deepEqual(d.peers.get(k(3)), { presharedKey: undefined, endpoint: "10.250.1.12:51820", allowedIps: ["10.244.2.0/24"], keepaliveSeconds: 0, latestHandshake: 0 });
    assert.deepEqual(d.peers.get(k(4)), { presharedKey: k(9), endpoint: "[fd00:250:1::13]:51821", allowedIps: ["10.244.3.0/24", "fd00:244:0:3::/64"], keepaliveSeconds: 25, latestHandshake: 1733380000 });
    assert.deepEqual(d.peers.get(k(5))?.allowedIps, []);
    assert.equal(parseWgDump(["(none)", "(none)", "0", "off"].join("\t")).privateKey, undefined);
  });
});
