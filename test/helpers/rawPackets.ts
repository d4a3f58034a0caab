/**
 * Hand-made packets from inside a pod, and UDP endpoints that count what reaches them: what
 * the anti-spoofing tests need to send a neighbour's address and see whether anything of it
 * arrives. One python3 program (node has no raw sockets) with three roles, each run in a
 * network namespace with `ip netns exec`:
 *
 *  - "send": builds IPv4/IPv6 packets byte by byte (UDP datagrams, ICMP port-unreachable
 *    errors quoting a UDP datagram, VXLAN- and IPIP-wrapped datagrams; every checksum right,
 *    any source address) and writes them to the pod's eth0 through an AF_PACKET socket,
 *    framed to the host veth's MAC: the pod's own routing and source selection never see
 *    them. Prints {"sent": n} and exits.
 *  - "listen": binds UDP ports (both families), counts datagrams per family, port and tag
 *    (the payload's first word) and echoes those tagged "flow". Answers a "report" line on
 *    stdin with the counts so far; exits when stdin closes.
 *  - "flow": a UDP flow per family from a fixed port to a listener (a connected socket, so
 *    an ICMP error for it is an error on the socket), one "flow" datagram every 20 ms; counts
 *    echoes, other datagrams by tag, and socket errors; also binds `extra` ports, unconnected,
 *    counting what reaches them. "report" and end of stdin as above; "pause" stops sending
 *    (and reports), so that the counts can be compared with conntrack's.
 *
 * It decides nothing: the test compares the counts.
 */
import { JsonLinesProcess } from "../../src/sandbox/jsonLinesProcess.js";

const RAW_PY = String.raw`
import json, select, socket, struct, sys, time

cfg = json.loads(sys.argv[1])

def say(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def addr(fam, a):
    return socket.inet_pton(socket.AF_INET if fam == 4 else socket.AF_INET6, a)

def pseudo(fam, src, dst, proto, length):
    if fam == 4:
        return addr(4, src) + addr(4, dst) + struct.pack("!BBH", 0, proto, length)
    return addr(6, src) + addr(6, dst) + struct.pack("!IxxxB", length, proto)

def udp(fam, src, dst, sport, dport, payload):
    length = 8 + len(payload)
    c = csum(pseudo(fam, src, dst, 17, length) + struct.pack("!HHHH", sport, dport, length, 0) + payload)
    return struct.pack("!HHHH", sport, dport, length, c or 0xffff) + payload

def ip(fam, src, dst, proto, body):
    if fam == 4:
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0x1234, 0x4000, 64, proto, 0, addr(4, src), addr(4, dst))
        return h[:10] + struct.pack("!H", csum(h)) + h[12:] + body
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), proto, 64, addr(6, src), addr(6, dst)) + body

def packet(p):
    fam = p["family"]
    if p["kind"] == "vxlan":
        # A UDP datagram to a VXLAN port carrying a whole Ethernet frame: an inner IPv4 UDP datagram with any source.
        inner = ip(4, p["innerSrc"], p["innerDst"], 17, udp(4, p["innerSrc"], p["innerDst"], p["innerSport"], p["innerDport"], p["payload"].encode()))
        frame = bytes.fromhex(p["innerDstMac"].replace(":", "")) + bytes.fromhex("02000000aa01") + struct.pack("!H", 0x0800) + inner
        vx = struct.pack("!II", 0x08000000, p["vni"] << 8) + frame
        return ip(fam, p["src"], p["dst"], 17, udp(fam, p["src"], p["dst"], p["sport"], p["dport"], vx))
    if p["kind"] == "ipip":
        # IP protocol 4 carrying a whole inner IPv4 UDP datagram with any source.
        inner = ip(4, p["innerSrc"], p["innerDst"], 17, udp(4, p["innerSrc"], p["innerDst"], p["innerSport"], p["innerDport"], p["payload"].encode()))
        return ip(4, p["src"], p["dst"], 4, inner)
    if p["kind"] == "udp":
        return ip(fam, p["src"], p["dst"], 17, udp(fam, p["src"], p["dst"], p["sport"], p["dport"], p["payload"].encode()))
    # An ICMP port unreachable from p["src"] to p["dst"], quoting the datagram dst:dport -> src:sport.
    quoted = ip(fam, p["dst"], p["src"], 17, udp(fam, p["dst"], p["src"], p["dport"], p["sport"], b"flow"))[: (28 if fam == 4 else 48)]
    if fam == 4:
        body = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        return ip(4, p["src"], p["dst"], 1, body)
    body = struct.pack("!BBHI", 1, 4, 0, 0) + quoted
    c = csum(pseudo(6, p["src"], p["dst"], 58, len(body)) + body)
    return ip(6, p["src"], p["dst"], 58, body[:2] + struct.pack("!H", c) + body[4:])

def send():
    mac = bytes.fromhex(cfg["mac"].replace(":", ""))
    socks = {}
    n = 0
    for _ in range(cfg["count"]):
        for p in cfg["packets"]:
            eth = 0x0800 if p["family"] == 4 else 0x86DD
            s = socks.get(eth)
            if s is None:
                s = socks[eth] = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(eth))
            s.sendto(packet(p), (cfg["iface"], eth, 0, 0, mac))
            n += 1
        time.sleep(cfg["intervalMs"] / 1000)
    say({"sent": n})

def bind(fam, port):
    s = socket.socket(socket.AF_INET if fam == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    if fam == 6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("0.0.0.0" if fam == 4 else "::", port))
    s.setblocking(False)
    return s

def count(counts, key, tag):
    c = counts.setdefault(key, {})
    c[tag] = c.get(tag, 0) + 1

def serve(socks, flows, echo):
    counts = {}
    seq = 0
    next_send = time.monotonic()
    while True:
        timeout = max(0.0, next_send - time.monotonic()) if flows else None
        ready, _, _ = select.select([sys.stdin] + list(socks), [], [], timeout)
        for r in ready:
            if r is sys.stdin:
                line = sys.stdin.readline()
                if not line:
                    return
                if line.strip() == "pause":
                    flows = []
                say({"counts": counts})
                continue
            key = socks[r]
            while True:
                try:
                    data, peer = r.recvfrom(65535)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    count(counts, key, "icmp-error")
                    continue
                tag = data.split(b" ")[0].decode(errors="replace")
                count(counts, key, tag)
                if tag == "flow" and echo:
                    r.sendto(data, peer)
        if flows and time.monotonic() >= next_send:
            for s, key in flows:
                try:
                    s.send(b"flow %d" % seq)
                    count(counts, key, "sent")
                except ConnectionRefusedError:
                    count(counts, key, "icmp-error")
            seq += 1
            next_send = time.monotonic() + 0.02

if cfg["mode"] == "send":
    send()
elif cfg["mode"] == "listen":
    socks = {bind(f, p): "%d/%d" % (f, p) for f in (4, 6) for p in cfg["ports"]}
    say({"ready": True})
    serve(socks, [], True)
else:
    socks = {}
    flows = []
    for f in (4, 6):
        s = bind(f, cfg["port"])
        s.connect((cfg["to"][str(f)], cfg["toPort"]))
        socks[s] = "%d/%d" % (f, cfg["port"])
        flows.append((s, socks[s]))
        for p in cfg["extra"]:
            socks[bind(f, p)] = "%d/%d" % (f, p)
    say({"ready": True})
    serve(socks, flows, False)
`;

/** "<family>/<port>" -> tag -> how many. Tags: a datagram's first word; "sent" and "icmp-error" for flows. */
export type Counts = Record<string, Record<string, number>>;

export const countOf = (c: Counts, family: 4 | 6, port: number, tag: string): number => c[`${family}/${port}`]?.[tag] ?? 0;

export interface RawUdp {
  kind: "udp";
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** Its first word is the tag the receiver counts it under. */
  payload: string;
}

/** An ICMP port unreachable from `src` to `dst` about the datagram `dst`:`dport` -> `src`:`sport`. */
export interface RawPortUnreachable {
  kind: "port-unreachable";
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

/**
 * A VXLAN packet made by hand: UDP from `src` to `dst`:`dport` (a node's VXLAN port) whose
 * payload is the VXLAN header (`vni`) and an Ethernet frame to `innerDstMac` (that node's
 * VTEP) holding an IPv4 UDP datagram `innerSrc`:`innerSport` -> `innerDst`:`innerDport`.
 */
export interface RawVxlan {
  kind: "vxlan";
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  vni: number;
  innerDstMac: string;
  innerSrc: string;
  innerDst: string;
  innerSport: number;
  innerDport: number;
  /** Its first word is the tag the receiver counts it under. */
  payload: string;
}

/** An IPIP packet made by hand: IPv4 protocol 4 from `src` to `dst` holding an IPv4 UDP datagram `innerSrc`:`innerSport` -> `innerDst`:`innerDport`. */
export interface RawIpip {
  kind: "ipip";
  family: 4;
  src: string;
  dst: string;
  innerSrc: string;
  innerDst: string;
  innerSport: number;
  innerDport: number;
  /** Its first word is the tag the receiver counts it under. */
  payload: string;
}

export type RawPacket = RawUdp | RawPortUnreachable | RawVxlan | RawIpip;

/** One of the roles, run in `netns`. */
export class RawPacketsProcess {
  private readonly proc: JsonLinesProcess;

  constructor(what: string, netns: string, cfg: Record<string, unknown>) {
    this.proc = new JsonLinesProcess(what, netns, ["python3", "-c", RAW_PY, JSON.stringify(cfg)]);
  }

  next(key: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return this.proc.line(key, timeoutMs);
  }

  /** The counts so far ("pause": a flow stops sending first). */
  async report(command: "report" | "pause" = "report"): Promise<Counts> {
    this.proc.send(command);
    return (await this.next("counts"))["counts"] as Counts;
  }

  stop(): void {
    this.proc.finish();
  }
}

/** A UDP counter in a namespace: both families, on every one of `ports`; "flow" datagrams are echoed. */
export async function startListener(netns: string, ports: readonly number[]): Promise<RawPacketsProcess> {
  const p = new RawPacketsProcess(`UDP listener in ${netns}`, netns, { mode: "listen", ports });
  await p.next("ready");
  return p;
}

/** A UDP flow per family from `port` to `to[family]`:`toPort`, plus counters on `extra` ports. */
export async function startFlow(netns: string, port: number, to: Record<4 | 6, string>, toPort: number, extra: readonly number[]): Promise<RawPacketsProcess> {
  const p = new RawPacketsProcess(`UDP flow from ${netns}`, netns, { mode: "flow", port, to, toPort, extra });
  await p.next("ready");
  return p;
}

/** Sends every packet `count` times (a round every `intervalMs`) out of `iface` to `mac`; returns how many were written. */
export async function sendRaw(netns: string, packets: readonly RawPacket[], o: { iface: string; mac: string; count: number; intervalMs: number }): Promise<number> {
  const p = new RawPacketsProcess(`raw sender in ${netns}`, netns, { mode: "send", packets, ...o });
  // The rounds themselves take count × intervalMs; on top, a python start that takes many
  // seconds in the software-emulated VM when CI runs it beside the other suites.
  return (await p.next("sent", 60_000 + o.count * o.intervalMs))["sent"] as number;
}

