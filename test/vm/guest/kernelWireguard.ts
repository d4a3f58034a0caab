/**
 * Runs in the kernel-feature VM, on the cluster of sandboxCluster.guest.ts, whose backend
 * is wireguard: there the kernel has WireGuard, so the agents make kernel devices (the
 * `wireguard` link kind, no wireguard-go), and the SCTP and IPVS cases before and after
 * this one carry their pod traffic through them. Here: each node's device is the kernel's,
 * holds the key its lease publishes and has the other node as its one peer, and pod traffic
 * between the nodes (the SCTP cases' probes) went through it: a handshake with that peer.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { wireguardDataOf } from "../../../src/backends/wireguard/spec.js";
import { parseWgDump } from "../../../src/backends/wireguard/wgTool.js";
import type { Sandbox } from "../../../src/sandbox/cluster.js";
import { nsExec } from "../../../src/sandbox/netns.js";
import { listLeases } from "../../../src/sandbox/nodes.js";

export function kernelWireguardTests(sb: Sandbox): void {
  describe("the wireguard backend on kernel WireGuard", () => {
    test("each node has a kernel WireGuard device with its lease's key and the other node as peer; the SCTP cases' traffic made a handshake", async () => {
      const leases = await listLeases(sb);
      const keyOf = (name: string): string | undefined => wireguardDataOf(leases.find((l) => l.attrs.NodeName === name)?.attrs.BackendData)?.PublicKey;
      for (const n of sb.nodes) {
        const link = await nsExec(n.ns, "ip", ["-d", "link", "show", "sluice-wg"]);
        assert.match(link, /\n\s+wireguard /, `${n.name}'s sluice-wg is a kernel WireGuard device:\n${link}`);
        const dump = parseWgDump(await nsExec(n.ns, "wg", ["show", "sluice-wg", "dump"]));
        const own = keyOf(n.name);
        assert.ok(own, `${n.name}'s lease carries its public key`);
        assert.equal((await nsExec(n.ns, "wg", ["show", "sluice-wg", "public-key"])).trim(), own);
        const others = sb.nodes.filter((o) => o !== n).map((o) => keyOf(o.name));
        assert.deepEqual([...dump.peers.keys()].sort(), others.sort());
        for (const [key, p] of dump.peers) assert.ok(p.latestHandshake > 0, `${n.name} completed a handshake with ${key}`);
      }
    });
  });
}
