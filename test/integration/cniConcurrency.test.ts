import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nodeLockName } from "../../src/cni/nodeLock.js";
import { run } from "../../src/dataplane/exec.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { formatReadyMark, localEndpointPath, policyReadyDir, policyReadyPath, readyMarkCovers } from "../../src/model/localEndpoints.js";
import { type CniNode, makeCniNode, pingFrom } from "../helpers/cni.js";
import { uniquePrefix } from "../helpers/netns.js";

describe("sluice-cni under concurrent ADDs", () => {
  const prefix = uniquePrefix("cnic");
  const N = 20;
  let node: CniNode;

  before(async () => {
    node = await makeCniNode(prefix, 32, "10.244.9.1/24");
  });
  after(async () => {
    await node?.destroy();
  });

  test(`${N} ADDs at once get distinct addresses and are all wired; ${N} DELs at once leave nothing`, async () => {
    const pods = await Promise.all(Array.from({ length: N }, (_, i) => node.pod(`c${i}`)));
    const replies = await Promise.all(pods.map((p, i) => node.add(p, `ctr-c${i}`, `c${i}`)));
    for (const r of replies) assert.equal(r.code, 0, r.stdout + r.stderr);
    const ips = replies.map((r) => ((r.json?.["ips"] as Array<{ address: string }>)[0]?.address ?? "").split("/")[0] as string);
    assert.equal(new Set(ips).size, N, `distinct addresses: ${ips.join(" ")}`);
    assert.deepEqual(node.allocations(), [...ips].sort());
    const links = await node.links();
    for (let i = 0; i < N; i++) assert.ok(links.includes(hostIfaceName("ns1", `c${i}`)), `host veth of pod ${i}`);
    const reach = await Promise.all(ips.map((addr) => pingFrom(node.ns, addr)));
    assert.deepEqual(reach, ips.map(() => true), "the node reaches every pod");
    assert.ok(await pingFrom(pods[0] as string, ips[N - 1] as string), "first pod reaches the last one");

    const dels = await Promise.all(pods.map((p, i) => node.del(p, `ctr-c${i}`, `c${i}`)));
    for (const r of dels) assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(node.allocations(), []);
    assert.deepEqual(await node.links(), ["ext0", "lo"]);
  });
});

describe("DEL of an old container beside ADD of the pod's new one", () => {
  const prefix = uniquePrefix("cnid");
  let node: CniNode;
  const record = (pod: string): { containerId?: string } | undefined => {
    try {
      return JSON.parse(readFileSync(localEndpointPath(node.dataDir, hostIfaceName("ns1", pod)), "utf8")) as { containerId?: string };
    } catch {
      return undefined;
    }
  };
  const ownerOf = (ip: string): string | undefined => {
    try {
      return readFileSync(join(node.dataDir, "sluice", ip), "utf8").split("\r\n")[0];
    } catch {
      return undefined;
    }
  };

  before(async () => {
    node = await makeCniNode(prefix, 34, "10.244.12.1/24");
  });
  after(async () => {
    await node?.destroy();
  });

  /** Holds the node lock from a process in the node's namespace (where every plugin call runs) until released. */
  async function holdNodeLock(): Promise<() => Promise<void>> {
    const script = `const s = require("net").createServer(); s.listen({ path: "\\0" + process.argv[1], exclusive: true }, () => process.stdout.write("held\\n")); process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;
    const holder = spawn("ip", ["netns", "exec", node.ns, process.execPath, "-e", script, nodeLockName(node.dataDir).slice(1)], { stdio: ["pipe", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once("data", () => resolve());
      holder.once("exit", (code) => reject(new Error(`lock holder exited (${code})`)));
    });
    return async () => {
      const gone = new Promise((r) => holder.once("exit", r));
      holder.stdin.end();
      await gone;
    };
  }

  test("DEL removes records and addresses under the node lock: nothing goes while another call holds it", async () => {
    const pod = await node.pod("r");
    const add = await node.add(pod, "ctr-r", "r");
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ip = ((add.json?.["ips"] as Array<{ address: string }>)[0]?.address ?? "").split("/")[0] as string;
    const release = await holdNodeLock();
    let settled = false;
    const del = node.del(pod, "ctr-r", "r").finally(() => (settled = true));
    try {
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(settled, false, "DEL waits for the lock");
      assert.equal(record("r")?.containerId, "ctr-r", "the record is still there");
      assert.equal(ownerOf(ip), "ctr-r", "the address is still held");
    } finally {
      await release();
    }
    const r = await del;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(record("r"), undefined);
    assert.equal(ownerOf(ip), undefined);
  });

  test("DEL of an old container leaves the new container's record, address and ready mark; its own address goes", async () => {
    const pod = await node.pod("s");
    const add = await node.add(pod, "ctr-s-new", "s");
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ip = ((add.json?.["ips"] as Array<{ address: string }>)[0]?.address ?? "").split("/")[0] as string;
    const hostIface = hostIfaceName("ns1", "s");
    mkdirSync(policyReadyDir(node.dataDir), { recursive: true });
    writeFileSync(policyReadyPath(node.dataDir, hostIface), formatReadyMark("ctr-s-new", [ip]));
    writeFileSync(join(node.dataDir, "sluice", "10.244.12.240"), "ctr-s-old\r\neth0");
    const del = await node.del(node.podNs("s-old-gone"), "ctr-s-old", "s");
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal(record("s")?.containerId, "ctr-s-new");
    assert.equal(ownerOf(ip), "ctr-s-new");
    assert.equal(ownerOf("10.244.12.240"), undefined, "the old container's address is released");
    assert.ok(readyMarkCovers(readFileSync(policyReadyPath(node.dataDir, hostIface), "utf8"), "ctr-s-new", [ip]), "the new container's mark stays");
    assert.ok((await node.links()).includes(hostIface));

    // The record is the old container's, but the agent has already programmed a newer one: its mark stays.
    writeFileSync(localEndpointPath(node.dataDir, hostIface), JSON.stringify({ ...record("s"), containerId: "ctr-s-old2" }));
    assert.equal((await node.del(node.podNs("s-old-gone"), "ctr-s-old2", "s")).code, 0);
    assert.equal(record("s"), undefined, "its own record goes");
    assert.ok(existsSync(policyReadyPath(node.dataDir, hostIface)), "another container's mark stays");
    writeFileSync(policyReadyPath(node.dataDir, hostIface), formatReadyMark("ctr-s-new", [ip]));
    assert.equal((await node.del(pod, "ctr-s-new", "s")).code, 0);
    assert.ok(!existsSync(policyReadyPath(node.dataDir, hostIface)), "the mark naming the DEL's own container goes");
    assert.deepEqual(node.allocations(), []);
  });

  test("10 pods replaced at once (DEL of the old container and ADD of the new one running together): only the new ones remain", async () => {
    const N = 10;
    const olds = await Promise.all(Array.from({ length: N }, (_, i) => node.pod(`o${i}`)));
    for (const [i, p] of olds.entries()) assert.equal((await node.add(p, `ctr-o${i}`, `q${i}`)).code, 0);
    const news = await Promise.all(Array.from({ length: N }, (_, i) => node.pod(`n${i}`)));
    const replies = await Promise.all(olds.flatMap((p, i) => [node.del(p, `ctr-o${i}`, `q${i}`), node.add(news[i] as string, `ctr-n${i}`, `q${i}`)]));
    for (const r of replies) assert.equal(r.code, 0, r.stdout + r.stderr);
    const links = await run("ip", ["-n", node.ns, "-j", "link", "show"]);
    const aliases = new Map((JSON.parse(links.stdout) as Array<{ ifname: string; ifalias?: string }>).map((l) => [l.ifname, l.ifalias]));
    for (let i = 0; i < N; i++) {
      assert.equal(record(`q${i}`)?.containerId, `ctr-n${i}`, `pod ${i}: the new container's record`);
      assert.equal(aliases.get(hostIfaceName("ns1", `q${i}`)), `sluice/sluice/ctr-n${i}/eth0/ns1/q${i}`, `pod ${i}: the new container's veth`);
    }
    const owners = node.allocations().map(ownerOf).sort();
    assert.deepEqual(owners, Array.from({ length: N }, (_, i) => `ctr-n${i}`).sort(), "exactly the new containers hold addresses");
    const dels = await Promise.all(news.map((p, i) => node.del(p, `ctr-n${i}`, `q${i}`)));
    for (const r of dels) assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(node.allocations(), []);
  });
});
