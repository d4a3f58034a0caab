/**
 * WireGuard: the common connectivity suite (full pod matrix, MTU, a node added and
 * removed, both agents restarted without a datagram lost) on two L2 segments behind a
 * router, then what only an encrypting backend must show: the underlay carries no pod
 * payload and no pod address, a restarted agent keeps its public key, a rotated key reaches
 * every peer, a departed node's
 * peer is removed from every device, and `sluicectl cleanup` removes the device. The kernel here has no WireGuard, so the agents run
 * Debian's wireguard-go (the kernel's WireGuard is tested in the kernel-feature VM).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { wireguardDataOf } from "../../src/backends/wireguard/spec.js";
import { run } from "../../src/dataplane/exec.js";
import type { Sandbox, SandboxNode } from "../../src/sandbox/cluster.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { netnsPids, nsExec } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { listLeases, removeSandboxNode } from "../../src/sandbox/nodes.js";
import { createPod, getPod, listPods, podId } from "../../src/sandbox/pods.js";
import { formatMatrix, openPodStream, reachability, waitForReachability } from "../../src/sandbox/probe.js";
import { e2eSuite } from "./connectivity.js";

/** The device's peers' public keys, read as the node's agent sees them (its /run/wireguard). */
async function devicePeers(sb: Sandbox, node: SandboxNode): Promise<string[]> {
  const pid = sb.agentPid(node);
  if (pid === undefined) throw new Error(`${node.name} has no agent`);
  const r = await run("nsenter", ["-t", String(pid), "-m", "-n", "wg", "show", "sluice-wg", "peers"]);
  if (r.code !== 0) throw new Error(`wg show on ${node.name}: ${r.stderr}`);
  return r.stdout.split("\n").filter(Boolean).sort();
}

async function devicePublicKey(sb: Sandbox, node: SandboxNode): Promise<string> {
  const r = await run("nsenter", ["-t", String(sb.agentPid(node)), "-m", "-n", "wg", "show", "sluice-wg", "public-key"]);
  return r.stdout.trim();
}

async function leaseKey(sb: Sandbox, node: SandboxNode): Promise<string | undefined> {
  const lease = (await listLeases(sb)).find((l) => l.attrs.NodeName === node.name);
  return wireguardDataOf(lease?.attrs.BackendData)?.PublicKey;
}

/** tcpdump on every underlay link (the router's namespace) while `during` runs; returns the capture's bytes (immediate mode: a stopped tcpdump leaves nothing in its ring). */
async function capture(sb: Sandbox, during: () => Promise<void>): Promise<Buffer> {
  const file = join(sb.o.stateDir, "underlay.pcap");
  rmSync(file, { force: true });
  const dump = spawn("ip", ["netns", "exec", sb.underlayNs, "tcpdump", "-i", "any", "--immediate-mode", "-U", "-Z", "root", "-s", "0", "-w", file, "ip or ip6"], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  dump.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => dump.once("exit", () => r()));
  try {
    assert.ok(await eventually(async () => /listening on/.test(err), 10_000, 50), `tcpdump did not start: ${err}`);
    await during();
    await new Promise((r) => setTimeout(r, 300)); // the last packets reach the file before tcpdump stops
  } finally {
    dump.kill("SIGINT");
    await exited;
  }
  return readFileSync(file);
}

const ipv4Bytes = (ip: string): Buffer => Buffer.from(ip.split(".").map(Number));

e2eSuite("ew", "wireguard", 2, {}, (sb) => {
  const node = (i: number): SandboxNode => sb.nodeByName(String(i));

  test("no packet on the underlay carries a pod's payload or a pod's address: only WireGuard between node addresses", async () => {
    const a = getPod(sb, "x/a"); // node-1
    const b = getPod(sb, "x/b"); // node-2, the other segment
    const marker = `sluice-plaintext-${process.pid}-must-not-show`;
    let echoed = "";
    const pcap = await capture(sb, async () => {
      const stream = await openPodStream(sb, "x/a", "x/b", 80);
      for (let i = 0; i < 20; i++) stream.write(`${marker}-${i}\n`);
      await eventually(async () => stream.received.includes(`${marker}-19\n`), 5000, 50);
      echoed = stream.received;
      stream.close();
    });
    assert.ok(echoed.includes(`${marker}-0\n`), "the payload crossed the underlay (and came back)");
    assert.ok(pcap.includes(ipv4Bytes(node(1).address)) && pcap.includes(ipv4Bytes(node(2).address)), `the capture saw the nodes' traffic (${pcap.length} bytes)`);
    assert.equal(pcap.includes(Buffer.from("sluice-plaintext-")), false, "no pod payload in clear on the underlay");
    for (const ip of [a.ips[0], b.ips[0]] as string[]) assert.equal(pcap.includes(ipv4Bytes(ip)), false, `pod address ${ip} never appears on the underlay`);
  });

  test("a restarted agent keeps its key pair: the same public key in its lease and on its device, peers unchanged", async () => {
    const n1 = node(1);
    const before = await leaseKey(sb, n1);
    assert.ok(before, "node-1's lease carries a WireGuard public key");
    assert.equal(await devicePublicKey(sb, n1), before);
    const peersBefore = await devicePeers(sb, n1);
    await sb.stopAgent(n1);
    await sb.startAgent(n1);
    await sb.waitReady(n1);
    assert.equal(await leaseKey(sb, n1), before, "the lease publishes the same key");
    assert.equal(await devicePublicKey(sb, n1), before, "the device kept its key");
    assert.deepEqual(await devicePeers(sb, n1), peersBefore);
    for (const other of [node(2), node(3)]) assert.ok((await devicePeers(sb, other)).includes(before), `${other.name} still has node-1 as a peer`);
  });

  test("a rotated key (a new one written to the key file, the agent restarted) is published, taken by the device and by every peer; traffic flows again", async () => {
    const n2 = node(2);
    const old = await leaseKey(sb, n2);
    assert.ok(old);
    await sb.stopAgent(n2);
    // The file is the key's source of truth; the device's key is kept only when there is no file.
    writeFileSync(join(n2.stateDir, "wgkey"), (await run("wg", ["genkey"])).stdout.trim(), { mode: 0o400 });
    await sb.startAgent(n2);
    await sb.waitReady(n2);
    const fresh = await leaseKey(sb, n2);
    assert.ok(fresh && fresh !== old, "a new key pair, published in the lease");
    assert.equal(await devicePublicKey(sb, n2), fresh, "the device took it");
    for (const n of [node(1), node(3)]) {
      assert.ok(await eventually(async () => {
        const peers = await devicePeers(sb, n);
        return peers.includes(fresh) && !peers.includes(old);
      }, 15_000), `${n.name} swapped node-2's old key for the new one`);
    }
    const pods = listPods(sb).map(podId);
    const { matrix, diff } = await waitForReachability(sb, reachability(pods, true), { port: 80, protocol: "TCP", withinMs: 15_000 });
    assert.deepEqual(diff, [], formatMatrix(matrix));
  });

  test("a node that joins becomes a peer of every device; once it departs, every device drops it", async () => {
    const n5 = await sb.addNode();
    await sb.waitReady(n5);
    await createPod(sb, { namespace: "x", name: "e", node: n5.name, labels: { pod: "e" } });
    const key = await leaseKey(sb, n5);
    assert.ok(key, "the new node published its key");
    for (const n of [node(1), node(2), node(3)]) {
      assert.ok(await eventually(async () => (await devicePeers(sb, n)).includes(key), 15_000), `${n.name} never added ${n5.name}'s peer`);
    }
    await removeSandboxNode(sb, n5.name);
    for (const n of [node(1), node(2), node(3)]) {
      assert.ok(await eventually(async () => !(await devicePeers(sb, n)).includes(key), 15_000), `${n.name} still has the departed ${n5.name} as a peer`);
      assert.equal((await devicePeers(sb, n)).length, 2, `${n.name} has exactly the two other nodes as peers`);
    }
  });

  test("sluicectl cleanup removes the WireGuard device, and wireguard-go exits with it (last: it leaves node-3 bare)", async () => {
    const n3 = node(3);
    await sb.stopAgent(n3);
    const comm = (pid: number): string => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        return ""; // gone
      }
    };
    const goPids = async (): Promise<number[]> => (await netnsPids(n3.ns)).filter((pid) => comm(pid) === "wireguard-go");
    assert.equal((await goPids()).length, 1, "the stopped agent's wireguard-go kept the device up");
    const out = await nsExec(n3.ns, process.execPath, [binPath("sluicectl"), "cleanup"]);
    assert.match(out, /device sluice-wg removed/);
    assert.doesNotMatch(await nsExec(n3.ns, "ip", ["link", "show"]), /sluice-wg/);
    assert.ok(await eventually(async () => (await goPids()).length === 0, 10_000), "wireguard-go exited once its device was gone");
  });
});
