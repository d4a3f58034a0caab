import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PodIpam, STALE_PARTIAL_MS } from "../../src/ipam/podIpam.js";
import { formatIp, parseCidr } from "../../src/model/ip.js";

describe("PodIpam allocation files", () => {
  let dir: string;
  let ipam: PodIpam;
  const subnet = parseCidr("10.9.0.0/29"); // allocatable: .2 .. .6
  const owner = { containerId: "ctr-a", ifName: "eth0" };
  const ago = (name: string, ms: number): void => {
    const t = (Date.now() - ms) / 1000;
    utimesSync(join(ipam.dir, name), t, t);
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "sluice-ipam-"));
    ipam = new PodIpam(join(dir, "net"));
    mkdirSync(ipam.dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("allocate publishes a complete file and leaves no temp file behind", () => {
    const ip = ipam.allocate(subnet, owner);
    assert.equal(formatIp(ip), "10.9.0.2");
    assert.equal(readFileSync(join(ipam.dir, "10.9.0.2"), "utf8"), "ctr-a\r\neth0");
    assert.deepEqual(readdirSync(ipam.dir).filter((n) => !n.startsWith("last_reserved_ip.")), ["10.9.0.2"]);
    assert.deepEqual(ipam.findByOwner(owner).map(formatIp), ["10.9.0.2"]);
  });

  test("an address whose file exists is skipped; a full subnet leaves no temp file", () => {
    for (const n of ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5"]) writeFileSync(join(ipam.dir, n), "other\r\neth0");
    assert.equal(formatIp(ipam.allocate(subnet, owner)), "10.9.0.6");
    assert.throws(() => ipam.allocate(subnet, { containerId: "ctr-b", ifName: "eth0" }), { name: "NoFreeAddressError" });
    assert.deepEqual(readdirSync(ipam.dir).filter((n) => n.startsWith(".")), []);
  });

  test("gc removes an empty allocation file (a writer killed midway) once it is stale, and the address is free again", () => {
    writeFileSync(join(ipam.dir, "10.9.0.2"), "");
    writeFileSync(join(ipam.dir, "10.9.0.3"), "");
    ago("10.9.0.2", STALE_PARTIAL_MS + 5_000);
    const kept = ipam.allocate(subnet, owner);
    assert.equal(formatIp(kept), "10.9.0.4");
    const released = ipam.gc([owner]);
    assert.deepEqual(released.map((a) => formatIp(a.ip)), ["10.9.0.2"]);
    // A fresh empty file may be a write in progress: left alone.
    assert.deepEqual(readdirSync(ipam.dir).filter((n) => !n.startsWith("last_reserved_ip.")).sort(), ["10.9.0.3", "10.9.0.4"]);
    assert.equal(ipam.freeCount(subnet), 3n);
    assert.deepEqual(ipam.findByOwner(owner).map(formatIp), ["10.9.0.4"]);
  });

  test("gc removes stale temp files and unreadable allocations but keeps valid owners", () => {
    writeFileSync(join(ipam.dir, ".alloc.123.x"), "ctr-dead\r\neth0");
    ago(".alloc.123.x", STALE_PARTIAL_MS + 1_000);
    writeFileSync(join(ipam.dir, ".alloc.456.y"), "ctr-live\r\neth0");
    mkdirSync(join(ipam.dir, "10.9.0.5")); // unreadable as a file; cannot be unlinked either: must not fail gc
    ago("10.9.0.5", STALE_PARTIAL_MS + 1_000);
    writeFileSync(join(ipam.dir, "10.9.0.6"), "\r\n");
    ago("10.9.0.6", STALE_PARTIAL_MS + 1_000);
    ipam.allocate(subnet, owner);
    const released = ipam.gc([owner]);
    assert.deepEqual(released.map((a) => formatIp(a.ip)), ["10.9.0.6"]);
    assert.deepEqual(readdirSync(ipam.dir).filter((n) => !n.startsWith("last_reserved_ip.")).sort(), [".alloc.456.y", "10.9.0.2", "10.9.0.5"]);
  });
});
