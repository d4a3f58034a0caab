/**
 * The one process a sandbox pod runs (its "container"), inside the pod's network
 * namespace:
 *  - serves every declared port: TCP echoes what it receives, UDP answers every datagram
 *    with the same bytes;
 *  - listens on a control socket (a unix socket in the sandbox state directory, reachable
 *    from any namespace because it lives in the file system) and, on request, makes
 *    connections *from the pod*: `probe` tries a list of targets in parallel and answers
 *    with one JSON line; `stream` opens a TCP connection and relays raw bytes both ways
 *    (a long-lived connection a test can drive).
 * It is plain JavaScript run with `node -e`, so it needs nothing but node, except for SCTP:
 * node has no SCTP sockets, so where the kernel has them (the vm test suite's guest) SCTP
 * ports are served and probed by a small python3 helper (SCTP_HELPER_PY) that it starts.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { run } from "../dataplane/exec.js";
import { kernelHasSctp } from "../dataplane/capabilities.js";
import { alive } from "./cluster.js";

export interface ServedPort {
  port: number;
  protocol: "TCP" | "UDP" | "SCTP";
}

export interface ProbeTarget {
  host: string;
  /** Ignored for ICMP. */
  port: number;
  protocol: "TCP" | "UDP" | "SCTP" | "ICMP";
}

/**
 * SCTP for the pod server, in python3 (its socket module opens IPPROTO_SCTP sockets); one
 * long-lived helper per server, since a python3 start costs seconds on an emulated CPU.
 * Arguments: the ports to serve (echo on one-to-one SCTP sockets, IPv4, and IPv6 where it
 * binds). It prints {"ready": true} once bound, then reads probe requests, one JSON line each
 * ({"id", "host", "port", "ms"}: connect, send a line, wait for its echo), answering each with
 * {"id", "status", "detail"?} in the pod server's status words. It exits when stdin closes
 * (the pod server is gone), once the probes under way have answered.
 */
export const SCTP_HELPER_PY = String.raw`
import errno, json, socket, sys, threading
lock = threading.Lock()
def say(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
def echo(c):
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()
def accept_loop(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def serve(port):
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            s.listen(64)
        except OSError as e:
            if fam == socket.AF_INET:
                say({"fatal": "sctp %d: %s" % (port, e)})
                sys.exit(1)
            continue
        threading.Thread(target=accept_loop, args=(s,), daemon=True).start()
def probe(req):
    out = {"id": req["id"]}
    s = socket.socket(socket.AF_INET6 if ":" in req["host"] else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.settimeout(req["ms"] / 1000.0)
    try:
        s.connect((req["host"], req["port"]))
        payload = b"sluice-probe\n"
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            d = s.recv(65536)
            if not d:
                break
            got += d
        out["status"] = "connected" if len(got) >= len(payload) else "closed"
    except socket.timeout:
        out["status"] = "timeout"
    except ConnectionRefusedError:
        out.update(status="refused", detail="ECONNREFUSED")
    except ConnectionResetError:
        out.update(status="reset", detail="ECONNRESET")
    except OSError as e:
        out.update(status="unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error", detail=str(e))
    finally:
        s.close()
    say(out)
for p in sys.argv[1:]:
    serve(int(p))
say({"ready": True})
for line in sys.stdin:
    # Not daemon threads: at the end of stdin the probes still running are answered first.
    threading.Thread(target=probe, args=(json.loads(line),)).start()
`;

/** connected = a TCP echo round trip, a UDP reply or an ICMP echo reply came back within the timeout. */
export type ProbeStatus = "connected" | "timeout" | "refused" | "reset" | "unreachable" | "closed" | "error";

export interface ProbeOutcome {
  status: ProbeStatus;
  /** Milliseconds until the outcome. */
  ms: number;
  detail?: string;
}

export const POD_SERVER_JS = String.raw`
"use strict";
const net = require("net"), dgram = require("dgram"), fs = require("fs"), cp = require("child_process");
const cfg = JSON.parse(process.argv[1]);
const log = (m) => process.stdout.write(new Date().toISOString() + " " + m + "\n");
const fatal = (m) => { log("fatal: " + m); process.exit(1); };
let pending = 0;
const bound = () => { if (--pending === 0) listenCtl(); };
// UDP probes' source ports: 40000-59999 in turn (a port comes back after 20,000 probes).
let udpSourcePort = 40000 + (process.pid % 20000);
const nextUdpSourcePort = () => { udpSourcePort = udpSourcePort >= 59999 ? 40000 : udpSourcePort + 1; return udpSourcePort; };
const sctpPorts = [];
let sctp; // the python3 SCTP helper, started for served SCTP ports or at the first SCTP probe
function sctpHelper(onReady) {
  if (sctp) return sctp;
  const h = cp.spawn("python3", ["-c", cfg.sctpHelper, ...sctpPorts.map(String)], { stdio: ["pipe", "pipe", "inherit"] });
  sctp = { h, waiting: new Map(), next: 1 };
  let buf = "";
  h.stdout.on("data", (d) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (msg.fatal) fatal(msg.fatal);
      else if (msg.ready) { if (onReady) onReady(); }
      else { const f = sctp.waiting.get(msg.id); sctp.waiting.delete(msg.id); if (f) f(msg.status, msg.detail); }
    }
  });
  h.on("error", (e) => fatal("sctp: python3: " + e.message));
  h.on("exit", (code) => fatal("sctp: the python3 helper exited (" + code + ")"));
  return sctp;
}
if (cfg.probe) {
  // One-shot mode (probes from a node's namespace): probe, print the results, exit.
  Promise.all(cfg.probe.targets.map((t) => probeOne(t, cfg.probe.timeoutMs))).then((results) => process.stdout.write(JSON.stringify({ results }) + "\n", () => process.exit(0)));
  cfg.ports = [];
  pending = -1;
}
for (const p of cfg.ports) {
  if (p.protocol === "TCP") {
    pending++;
    const srv = net.createServer((s) => { s.on("data", (d) => s.write(d)); s.on("error", () => {}); });
    srv.on("error", (e) => fatal("tcp " + p.port + ": " + e.message));
    srv.listen({ port: p.port, host: "0.0.0.0" }, () => { log("serving " + p.port + "/TCP"); bound(); });
    const srv6 = net.createServer((s) => { s.on("data", (d) => s.write(d)); s.on("error", () => {}); });
    srv6.on("error", () => {});
    srv6.listen({ port: p.port, host: "::", ipv6Only: true });
  } else if (p.protocol === "UDP") {
    pending++;
    for (const type of ["udp4", "udp6"]) {
      const u = dgram.createSocket({ type, ipv6Only: type === "udp6" });
      u.on("message", (m, r) => u.send(m, r.port, r.address));
      if (type === "udp4") {
        u.on("error", (e) => fatal("udp " + p.port + ": " + e.message));
        u.bind(p.port, "0.0.0.0", () => { log("serving " + p.port + "/UDP"); bound(); });
      } else {
        u.on("error", () => { try { u.close(); } catch (_) {} });
        u.bind(p.port, "::");
      }
    }
  } else if (p.protocol === "SCTP" && cfg.sctpHelper) {
    sctpPorts.push(p.port);
  } else {
    log("not serving " + p.port + "/" + p.protocol + " (no " + p.protocol + " here)");
  }
}
if (sctpPorts.length) {
  pending++;
  sctpHelper(() => { for (const p of sctpPorts) log("serving " + p + "/SCTP"); bound(); });
}
if (pending === 0) listenCtl();

function statusOf(e) {
  const c = e && e.code;
  if (c === "ECONNREFUSED") return "refused";
  if (c === "ECONNRESET" || c === "EPIPE") return "reset";
  if (c === "EHOSTUNREACH" || c === "ENETUNREACH") return "unreachable";
  return "error";
}

function probeOne(t, ms) {
  const start = Date.now();
  return new Promise((resolve) => {
    let done = false, timer, cleanup = () => {};
    const finish = (status, detail) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cleanup();
      resolve(detail ? { status, ms: Date.now() - start, detail } : { status, ms: Date.now() - start });
    };
    // The SCTP helper and ping enforce their probe's timeout themselves (below); ours then
    // only catches a helper that never answers. A timeout is decided in the check phase
    // (setImmediate), after the poll phase has read whatever arrived: a pod server whose
    // loop was starved past the deadline on a loaded machine would otherwise call a
    // reply sitting in its socket a timeout, because timers run before I/O.
    const timeoutAfter = (after) => setTimeout(() => setImmediate(() => finish("timeout")), after);
    timer = timeoutAfter(t.protocol === "SCTP" || t.protocol === "ICMP" ? ms + 30000 : ms);
    try {
      if (t.protocol === "SCTP") {
        if (!cfg.sctpHelper) return finish("error", "no SCTP sockets in this kernel");
        const h = sctpHelper();
        const id = h.next++;
        h.waiting.set(id, finish);
        cleanup = () => h.waiting.delete(id);
        h.h.stdin.write(JSON.stringify({ id, host: t.host, port: t.port, ms }) + "\n");
      } else if (t.protocol === "ICMP") {
        // Echo requests from the system's ping (node has no raw sockets), one every 200 ms
        // like the UDP probe's datagrams, until a reply, an ICMP error or the timeout.
        // ping's own deadline (-w, whole seconds) is the timeout, and its exit status the
        // verdict: it is network time measured by the process that sends and receives,
        // not by our loop, which 99 probes starting at once on a loaded machine can starve
        // (seen in CI as a pod that could not ping its own address, and as a pod-to-pod
        // ping that was allowed 3 s later).
        const deadline = Math.max(1, Math.ceil(ms / 1000));
        const count = String(Math.ceil((deadline * 1000) / 200) + 1);
        const p = cp.spawn("ping", ["-n", "-i", "0.2", "-c", count, "-w", String(deadline), t.host], { stdio: ["ignore", "pipe", "pipe"] });
        cleanup = () => { try { p.kill("SIGKILL"); } catch (_) {} };
        p.on("spawn", () => { clearTimeout(timer); timer = timeoutAfter(deadline * 1000 + 10000); });
        let out = "";
        p.stdout.on("data", (d) => {
          out += d.toString();
          if (/ bytes from /.test(out)) finish("connected");
          else if (/^From .*(Unreachable|filtered)/m.test(out)) finish("unreachable", (/^From .*$/m.exec(out) || [""])[0]);
        });
        p.stderr.on("data", (d) => { out += d.toString(); });
        p.on("error", (e) => finish("error", "ping: " + e.message));
        p.on("close", (code) => {
          if (code === 0 || / bytes from /.test(out)) finish("connected");
          else if (code === 1) finish("timeout");
          else finish(/unreachable/i.test(out) ? "unreachable" : "error", out.trim().split("\n").pop());
        });
      } else if (t.protocol === "UDP") {
        // The source port comes from this server's own sequence, never the kernel's random
        // pick: a probe that reused the 4-tuple of an earlier one which policy allowed
        // would ride that flow's conntrack entry (UDP keeps it 30 s) through a new deny,
        // and report "connected" where a new flow is dropped.
        let u;
        let iv;
        cleanup = () => { clearInterval(iv); try { u && u.close(); } catch (_) {} };
        const payload = Buffer.from("sluice-probe");
        const open = (tries) => {
          const sock = dgram.createSocket(net.isIPv6(t.host) ? "udp6" : "udp4");
          u = sock;
          sock.once("error", (e) => {
            try { sock.close(); } catch (_) {}
            if (e.code === "EADDRINUSE" && tries < 50) open(tries + 1);
            else finish(statusOf(e), e.code || e.message);
          });
          sock.bind(nextUdpSourcePort(), () => {
            sock.removeAllListeners("error");
            sock.on("error", (e) => finish(statusOf(e), e.code || e.message));
            sock.on("message", () => finish("connected"));
            const send = () => sock.send(payload, (e) => { if (e) finish(statusOf(e), e.code || e.message); });
            sock.connect(t.port, t.host, (e) => {
              if (e) return finish(statusOf(e), e.code || e.message);
              send();
              iv = setInterval(send, 200);
            });
          });
        };
        open(0);
      } else {
        const s = net.connect({ host: t.host, port: t.port });
        cleanup = () => s.destroy();
        const payload = "sluice-probe\n";
        let got = 0;
        s.on("connect", () => s.write(payload));
        s.on("data", (d) => { got += d.length; if (got >= payload.length) finish("connected"); });
        s.on("error", (e) => finish(statusOf(e), e.code || e.message));
        s.on("close", () => finish("closed"));
      }
    } catch (e) {
      finish("error", e.message);
    }
  });
}

function listenCtl() {
  try { fs.unlinkSync(cfg.ctl); } catch (_) {}
  const ctl = net.createServer((c) => {
    c.on("error", () => {});
    let buf = "";
    const onData = (d) => {
      buf += d.toString("latin1");
      const i = buf.indexOf("\n");
      if (i < 0) return;
      c.removeListener("data", onData);
      c.pause();
      let req;
      try { req = JSON.parse(buf.slice(0, i)); } catch (e) { c.end(JSON.stringify({ error: "bad request" }) + "\n"); return; }
      handle(c, req, Buffer.from(buf.slice(i + 1), "latin1"));
    };
    c.on("data", onData);
  });
  ctl.on("error", (e) => fatal("control socket: " + e.message));
  ctl.listen(cfg.ctl, () => log("ready"));
}

function handle(c, req, rest) {
  if (req.op === "ping") return c.end(JSON.stringify({ ok: true, pid: process.pid }) + "\n");
  if (req.op === "probe") {
    Promise.all(req.targets.map((t) => probeOne(t, req.timeoutMs))).then((results) => c.end(JSON.stringify({ results }) + "\n"));
    return;
  }
  if (req.op === "stream") {
    const s = net.connect({ host: req.host, port: req.port });
    const t = setTimeout(() => { s.destroy(); c.end(JSON.stringify({ error: "timeout" }) + "\n"); }, req.timeoutMs || 5000);
    s.once("error", (e) => { clearTimeout(t); c.end(JSON.stringify({ error: e.code || e.message }) + "\n"); });
    s.once("connect", () => {
      clearTimeout(t);
      c.write(JSON.stringify({ connected: true }) + "\n");
      if (rest.length) s.write(rest);
      s.removeAllListeners("error");
      s.on("error", () => c.destroy());
      c.on("error", () => s.destroy());
      c.pipe(s);
      s.pipe(c);
      c.resume();
    });
    return;
  }
  c.end(JSON.stringify({ error: "unknown op " + req.op }) + "\n");
}
process.on("SIGTERM", () => {
  try { fs.unlinkSync(cfg.ctl); } catch (_) {}
  if (sctp) { try { sctp.h.kill("SIGKILL"); } catch (_) {} }
  process.exit(0);
});
`;

/** The helper goes to the server only where the kernel has SCTP sockets: elsewhere SCTP ports stay unserved. */
let hasSctp: boolean | undefined; // asked once per process: kernelHasSctp() reads modules.dep
function sctpConfig(): { sctpHelper?: string } {
  hasSctp ??= kernelHasSctp();
  return hasSctp ? { sctpHelper: SCTP_HELPER_PY } : {};
}

/** Starts the pod's server detached inside its namespace; returns its pid. */
export function spawnPodServer(netns: string, ports: readonly ServedPort[], ctlSocket: string, logFile: string): number {
  const fd = openSync(logFile, "a");
  const cfg = { ports, ctl: ctlSocket, ...sctpConfig() };
  const child = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", POD_SERVER_JS, JSON.stringify(cfg)], { stdio: ["ignore", fd, fd], detached: true });
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new Error(`could not start the pod server in ${netns}`);
  return child.pid;
}

/**
 * Probes from any network namespace (a node's, say) with a one-shot run of the same
 * code: one process, all targets in parallel.
 */
export async function probeFromNetns(netns: string, targets: readonly ProbeTarget[], timeoutMs: number): Promise<ProbeOutcome[]> {
  const cfg = JSON.stringify({ ports: [], probe: { targets, timeoutMs }, ...sctpConfig() });
  const r = await run("ip", ["netns", "exec", netns, process.execPath, "-e", POD_SERVER_JS, cfg], undefined, timeoutMs + 15_000);
  if (r.code !== 0) throw new Error(`probe from ${netns} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return (JSON.parse(r.stdout) as { results: ProbeOutcome[] }).results;
}

/** One request on a pod's control socket; resolves with the first JSON line of the answer. */
export function ctlRequest<T>(ctlSocket: string, req: Record<string, unknown>, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: ctlSocket });
    let buf = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer on ${ctlSocket} within ${timeoutMs}ms`));
    }, timeoutMs);
    s.on("connect", () => s.write(JSON.stringify(req) + "\n"));
    s.on("data", (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf("\n");
      if (i < 0) return;
      clearTimeout(timer);
      s.destroy();
      try {
        const v = JSON.parse(buf.slice(0, i)) as T & { error?: string };
        if (v.error) reject(new Error(v.error));
        else resolve(v);
      } catch (err) {
        reject(err as Error);
      }
    });
    s.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`pod control socket ${ctlSocket}: ${err.message} (is the pod's server running?)`));
    });
  });
}

/**
 * Waits until the server answers on its control socket (or exits, then its log says why at
 * once). The long default only matters for a server that hangs: an emulated CPU (the vm
 * suite) takes seconds to start node and each SCTP helper.
 */
export async function waitPodServer(ctlSocket: string, pid: number, logFile: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(ctlSocket)) {
      try {
        await ctlRequest(ctlSocket, { op: "ping" }, 1000);
        return;
      } catch {
        /* not yet */
      }
    }
    const running = alive(pid);
    if (!running || Date.now() > deadline) {
      const log = existsSync(logFile) ? readFileSync(logFile, "utf8").trim().split("\n").slice(-5).join("\n") : "";
      throw new Error(`the pod server ${running ? "did not answer within " + timeoutMs + "ms" : "exited"}${log ? `:\n${log}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 30));
  }
}

/**
 * A long-lived TCP connection made from inside a pod (by its server), relayed to this
 * process over the control socket: what `write` sends goes to the target; everything the
 * target sends back is collected in `received`.
 */
export class PodStream {
  private readonly chunks: Buffer[] = [];
  /** Why the relay closed ("closed" for an orderly end, else the error), once it has. */
  closedWith: string | undefined;

  constructor(
    readonly socket: Socket,
    initial: Buffer,
  ) {
    if (initial.length) this.chunks.push(initial);
    socket.on("data", (d: Buffer) => this.chunks.push(d));
    socket.on("error", (err) => (this.closedWith = err.message));
    socket.on("close", () => (this.closedWith ??= "closed"));
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  get received(): string {
    return Buffer.concat(this.chunks).toString();
  }

  close(): void {
    this.socket.destroy();
  }
}

export async function openStream(ctlSocket: string, host: string, port: number, timeoutMs = 5000): Promise<PodStream> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: ctlSocket });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`stream to ${host}:${port}: no answer within ${timeoutMs}ms`));
    }, timeoutMs + 1000);
    s.on("connect", () => s.write(JSON.stringify({ op: "stream", host, port, timeoutMs }) + "\n"));
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(new Error(`stream to ${host}:${port}: ${err.message}`));
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const i = buf.indexOf(10);
      if (i < 0) return;
      clearTimeout(timer);
      s.removeListener("data", onData);
      s.removeListener("error", onError);
      let head: { connected?: boolean; error?: string };
      try {
        head = JSON.parse(buf.subarray(0, i).toString()) as { connected?: boolean; error?: string };
      } catch {
        head = { error: "bad answer from the pod server" };
      }
      if (!head.connected) {
        s.destroy();
        reject(new Error(`stream to ${host}:${port}: ${head.error ?? "refused"}`));
        return;
      }
      resolve(new PodStream(s, buf.subarray(i + 1)));
    };
    s.on("data", onData);
    s.on("error", onError);
  });
}
