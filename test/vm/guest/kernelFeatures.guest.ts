/**
 * Runs in the kernel-feature VM: the features the host's kernel lacks are really there, each
 * carrying traffic between two network namespaces: kernel WireGuard (wg-quick's peer model,
 * keys from `wg genkey`), an IPIP tunnel, an IPVS virtual service (ipvsadm) in front of a
 * server, SCTP sockets; and the dataplane's capability probe sees them. These are the
 * ground the WireGuard/IPIP backend tests and the IPVS policing tests stand on; when one of
 * these fails, those would fail for a reason that is not theirs.
 */
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { binaries } from "../../../src/dataplane/iptables.js";
import { kernelHasSctp, probeCapabilities, probeRule } from "../../../src/dataplane/capabilities.js";
import { runOk } from "../../../src/dataplane/exec.js";
import { ip, nsExec, nsTry } from "../../../src/sandbox/netns.js";
import { SCTP_HELPER_PY } from "../../../src/sandbox/podServer.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../../helpers/netns.js";

const prefix = uniquePrefix("vkf");
const A = `${prefix}-a`;
const B = `${prefix}-b`;

/** A TCP echo server in `ns` on `port` (node, one connection at a time is enough). */
const ECHO_JS = `require("net").createServer((s) => s.pipe(s)).listen(+process.argv[1], process.argv[2] || "0.0.0.0", () => console.log("up"))`;

async function tcpEcho(ns: string, host: string, port: number): Promise<boolean> {
  const js = `const s = require("net").connect(${port}, ${JSON.stringify(host)}, () => s.write("ping\\n")); s.on("data", () => process.exit(0)); s.on("error", () => process.exit(1)); setTimeout(() => process.exit(2), 5000);`;
  return (await nsTry(ns, process.execPath, ["-e", js], 30_000)).code === 0;
}

/** One SCTP probe by the pod server's helper, run once in `ns`: its answer line. */
async function sctpProbe(ns: string, host: string, port: number): Promise<{ id: number; status: string; detail?: string }> {
  const out = await nsExec(ns, "python3", ["-c", SCTP_HELPER_PY], JSON.stringify({ id: 1, host, port, ms: 5000 }) + "\n");
  const answer = out.trim().split("\n").pop() ?? "";
  return JSON.parse(answer) as { id: number; status: string; detail?: string };
}

async function ping(ns: string, host: string): Promise<boolean> {
  return (await nsTry(ns, "ping", ["-n", "-c", "1", "-W", "3", host], 15_000)).code === 0;
}

describe("the VM's kernel has what the host's lacks, and it carries traffic", () => {
  const servers: number[] = [];
  before(async () => {
    await removeNetnsWithPrefix(prefix);
    await makeNetns(A);
    await makeNetns(B);
    await ip("link", "add", "vkf-a", "netns", A, "type", "veth", "peer", "name", "vkf-b", "netns", B);
    await nsExec(A, "ip", ["addr", "add", "192.0.2.1/24", "dev", "vkf-a"]);
    await nsExec(B, "ip", ["addr", "add", "192.0.2.2/24", "dev", "vkf-b"]);
    await nsExec(A, "ip", ["link", "set", "vkf-a", "up"]);
    await nsExec(B, "ip", ["link", "set", "vkf-b", "up"]);
    assert.ok(await ping(A, "192.0.2.2"), "the plain veth works");
  });
  after(async () => {
    for (const pid of servers) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await removeNetnsWithPrefix(prefix);
  });

  test("kernel WireGuard: two peers with generated keys exchange traffic over UDP", async () => {
    const keyA = (await runOk("wg", ["genkey"])).trim();
    const keyB = (await runOk("wg", ["genkey"])).trim();
    const pub = async (k: string): Promise<string> => (await runOk("wg", ["pubkey"], k + "\n")).trim();
    for (const [ns, key, peerKey, addr, peerAddr, peerEnd] of [
      [A, keyA, keyB, "10.99.0.1", "10.99.0.2", "192.0.2.2"],
      [B, keyB, keyA, "10.99.0.2", "10.99.0.1", "192.0.2.1"],
    ] as const) {
      await nsExec(ns, "ip", ["link", "add", "wg0", "type", "wireguard"]);
      await nsExec(ns, "sh", ["-c", `umask 077; printf '%s\\n' '${key}' >/tmp/${ns}.key && wg set wg0 private-key /tmp/${ns}.key listen-port 51820 peer ${await pub(peerKey)} endpoint ${peerEnd}:51820 allowed-ips ${peerAddr}/32`]);
      await nsExec(ns, "ip", ["addr", "add", `${addr}/24`, "dev", "wg0"]);
      await nsExec(ns, "ip", ["link", "set", "wg0", "up"]);
    }
    assert.equal((await nsExec(A, "ip", ["-d", "link", "show", "wg0"])).includes("wireguard"), true, "a kernel wireguard device, not wireguard-go's TUN");
    assert.ok(await ping(A, "10.99.0.2"), "a ping through the tunnel");
    const hs = await nsExec(A, "wg", ["show", "wg0", "latest-handshakes"]);
    assert.match(hs, /\t[1-9]\d*$/m, `a completed handshake: ${hs}`);
  });

  test("IPIP: a tunnel between the two ends carries TCP", async () => {
    await nsExec(A, "ip", ["link", "add", "tun0", "type", "ipip", "local", "192.0.2.1", "remote", "192.0.2.2"]);
    await nsExec(B, "ip", ["link", "add", "tun0", "type", "ipip", "local", "192.0.2.2", "remote", "192.0.2.1"]);
    await nsExec(A, "ip", ["addr", "add", "10.98.0.1/30", "dev", "tun0"]);
    await nsExec(B, "ip", ["addr", "add", "10.98.0.2/30", "dev", "tun0"]);
    await nsExec(A, "ip", ["link", "set", "tun0", "up"]);
    await nsExec(B, "ip", ["link", "set", "tun0", "up"]);
    const srv = await startServer(B, 7001, "10.98.0.2");
    servers.push(srv);
    assert.ok(await tcpEcho(A, "10.98.0.2", 7001), "TCP through the IPIP tunnel");
    const stats = await nsExec(B, "ip", ["-s", "-j", "link", "show", "tun0"]);
    const rx = (JSON.parse(stats) as Array<{ stats64: { rx: { packets: number } } }>)[0]?.stats64.rx.packets ?? 0;
    assert.ok(rx > 0, "the packets came in on the tunnel device");
  });

  test("IPVS: a virtual service (ipvsadm) in front of a real server forwards TCP", async () => {
    const srv = await startServer(B, 8080);
    servers.push(srv);
    await nsExec(A, "ip", ["addr", "add", "10.96.0.10/32", "dev", "lo"]);
    await nsExec(B, "ip", ["route", "add", "10.96.0.10/32", "via", "192.0.2.1"]); // the reply to the (unrewritten) client address
    await nsExec(A, "ipvsadm", ["-A", "-t", "10.96.0.10:80", "-s", "rr"]);
    await nsExec(A, "ipvsadm", ["-a", "-t", "10.96.0.10:80", "-r", "192.0.2.2:8080", "-m"]);
    assert.ok(await tcpEcho(A, "10.96.0.10", 80), "TCP to the virtual service reaches the real server");
    // The connection table, not --stats: the stats are summed by a timer every 2 s.
    const conns = await nsExec(A, "ipvsadm", ["-L", "-n", "-c"]);
    assert.match(conns, /TCP\s+\S+\s+\S+\s+\S+\s+10\.96\.0\.10:80\s+192\.0\.2\.2:8080/, `IPVS tracked the connection to the real server:\n${conns}`);
    assert.equal((await probeRule(binaries(4, "nft", A), "-m ipvs --vproto 6")).ok, true, "iptables' ipvs match loads here");
  });

  test("SCTP: sockets open, an association echoes data, and both iptables backends' SCTP port match counts its packets", async () => {
    assert.equal(kernelHasSctp(), true);
    servers.push(await startProcess(B, "python3", ["-c", SCTP_HELPER_PY, "9899"], '"ready"'));
    for (const mode of ["nft", "legacy"] as const) {
      const caps = await probeCapabilities(binaries(4, mode, B), 4);
      assert.equal(caps.sctpProtocol, true, `${mode}: the capability probe sees SCTP sockets`);
      assert.equal(caps.sctpMatch, true, `${mode}: and the SCTP match (${caps.notes.join("; ")})`);
      const rule = ["INPUT", "-p", "sctp", "-m", "sctp", "--dport", "9899", "-j", "ACCEPT"];
      await nsExec(B, `iptables-${mode}`, ["-I", ...rule]);
      try {
        assert.deepEqual(await sctpProbe(A, "192.0.2.2", 9899), { id: 1, status: "connected" }, `${mode}: the association echoes`);
        const saved = await nsExec(B, `iptables-${mode}-save`, ["-c", "-t", "filter"]);
        const counted = /^\[(\d+):\d+\] -A INPUT -p sctp -m sctp --dport 9899 -j ACCEPT$/m.exec(saved);
        assert.ok(counted && Number(counted[1]) >= 2, `${mode}: INIT and DATA at least were matched by the port rule:\n${saved}`);
      } finally {
        await nsExec(B, `iptables-${mode}`, ["-D", ...rule]);
      }
    }
    assert.equal((await sctpProbe(A, "192.0.2.2", 9898)).status, "refused", "no listener: the peer aborts the association");
  });

  async function startServer(ns: string, port: number, host?: string): Promise<number> {
    return startProcess(ns, process.execPath, ["-e", ECHO_JS, String(port), ...(host ? [host] : [])], "up");
  }
});

/** Starts a long-running process in `ns` and waits until it prints `ready`; returns its pid. */
async function startProcess(ns: string, cmd: string, args: readonly string[], ready: string): Promise<number> {
  // stdin stays open (a pipe): the SCTP helper serves until its stdin closes.
  const child = spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: ["pipe", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${cmd} in ${ns} did not print "${ready}" within 30 s: ${out}`)), 30_000);
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} in ${ns} exited (${code}) before it was ready: ${out}`));
    });
  });
  if (!child.pid) throw new Error(`${cmd} in ${ns} has no pid`);
  child.stdout.removeAllListeners("data");
  child.stdout.resume();
  child.removeAllListeners("exit");
  child.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  return child.pid;
}
