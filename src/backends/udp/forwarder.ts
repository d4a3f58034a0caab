/**
 * The udp backend's userspace loop: pod packets read from the TUN device go out as UDP
 * datagrams to the peer whose subnet holds their destination; datagrams that arrive are
 * written back into the TUN device if their sender may deliver them (peerTable.ts). One
 * read of the TUN device is in flight at a time (a blocking read in libuv's thread pool:
 * Node cannot poll a TUN descriptor), so packets leave in the order they came.
 *
 * What it drops it counts (`stats`) and logs at most once a minute per reason: a packet
 * for no known peer, a datagram from no peer or carrying another's addresses, anything
 * that is not IPv4.
 */
import { type Socket, createSocket } from "node:dgram";
import { read, write } from "node:fs";
import type { Logger } from "pino";
import { UdpPeerTable } from "./peerTable.js";

export interface UdpForwarderStats {
  sent: number;
  received: number;
  noPeer: number;
  refused: number;
  notIpv4: number;
  errors: number;
}

const IPV4_HEADER = 20;
const LOG_EVERY_MS = 60_000;

export class UdpForwarder {
  readonly stats: UdpForwarderStats = { sent: 0, received: 0, noPeer: 0, refused: 0, notIpv4: 0, errors: 0 };
  private table = new UdpPeerTable([], undefined);
  private stopped = false;
  private readonly lastLogged = new Map<string, number>();

  private constructor(
    private readonly fd: number,
    private readonly socket: Socket,
    readonly port: number,
    readonly bindAddress: string,
    private readonly bufferSize: number,
    private readonly log: Logger,
  ) {}

  /** Binds `bindAddress`:`port` and starts both directions. */
  static async start(o: { fd: number; port: number; bindAddress: string; mtu: number; log: Logger }): Promise<UdpForwarder> {
    const socket = createSocket({ type: "udp4", reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(o.port, o.bindAddress, () => {
        socket.off("error", reject);
        resolve();
      });
    }).catch((err: unknown) => {
      socket.close();
      throw new Error(`udp backend: cannot bind ${o.bindAddress}:${o.port}: ${(err as Error).message}`);
    });
    const f = new UdpForwarder(o.fd, socket, o.port, o.bindAddress, Math.max(o.mtu, 1500) + 64, o.log);
    socket.on("message", (msg, rinfo) => f.fromPeer(msg, rinfo.address));
    socket.on("error", (err) => f.note("error", { err: err.message }, "udp backend socket error"));
    f.readTun();
    return f;
  }

  setTable(t: UdpPeerTable): boolean {
    if (t.key === this.table.key) return false;
    this.table = t;
    return true;
  }

  /** Stops sending and receiving; a TUN read in flight ends with the next packet (the descriptor stays open: the device is the kernel module's). */
  stop(): void {
    this.stopped = true;
    this.socket.close();
  }

  private readTun(): void {
    if (this.stopped) return;
    const buf = Buffer.allocUnsafe(this.bufferSize);
    read(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (this.stopped) return;
      if (err) {
        this.note("error", { err: err.message }, "udp backend: reading the TUN device failed");
        setTimeout(() => this.readTun(), 100).unref();
        return;
      }
      this.toPeer(buf.subarray(0, n));
      this.readTun();
    });
  }

  private toPeer(pkt: Buffer): void {
    if (pkt.length < IPV4_HEADER || pkt.readUInt8(0) >> 4 !== 4) {
      this.stats.notIpv4++;
      return;
    }
    const peer = this.table.peerFor(pkt.readUInt32BE(16));
    if (!peer) {
      this.stats.noPeer++;
      this.note("noPeer", { dst: dotted(pkt, 16) }, "udp backend: a packet for no known peer dropped");
      return;
    }
    this.socket.send(pkt, peer.port, peer.address, (err) => {
      if (err) this.note("error", { err: err.message, peer: peer.name }, "udp backend: sending to a peer failed");
      else this.stats.sent++;
    });
  }

  private fromPeer(msg: Buffer, from: string): void {
    if (msg.length < IPV4_HEADER || msg.readUInt8(0) >> 4 !== 4) {
      this.stats.notIpv4++;
      return;
    }
    if (!this.table.admits(from, msg.readUInt32BE(12), msg.readUInt32BE(16))) {
      this.stats.refused++;
      this.note("refused", { from, src: dotted(msg, 12), dst: dotted(msg, 16) }, "udp backend: a datagram from no peer, or with addresses its sender may not deliver, dropped");
      return;
    }
    write(this.fd, msg, (err) => {
      if (err) this.note("error", { err: err.message }, "udp backend: writing to the TUN device failed");
      else this.stats.received++;
    });
  }

  private note(reason: string, fields: Record<string, unknown>, msg: string): void {
    if (reason === "error") this.stats.errors++;
    const now = Date.now();
    if (now - (this.lastLogged.get(reason) ?? -Infinity) < LOG_EVERY_MS) return;
    this.lastLogged.set(reason, now);
    this.log.warn({ ...fields, stats: this.stats }, msg);
  }
}

const dotted = (b: Buffer, at: number): string => [0, 1, 2, 3].map((i) => b.readUInt8(at + i)).join(".");
