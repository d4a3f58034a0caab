/**
 * A TUN device opened from Node: `/dev/net/tun` with `open(2)`, attached to a named device
 * by the TUNSETIFF ioctl, which Node cannot issue itself. koffi (a maintained FFI with
 * prebuilt binaries for every Linux architecture the image ships, no compiler at install)
 * calls libc's `ioctl` for it; the rest is plain `fs` on the file descriptor.
 *
 * The device is made persistent (TUNSETPERSIST): it, its address and the routes through it
 * outlive the agent, so a restart reattaches to it instead of tearing the routes down
 * (packets that arrive while no agent reads are dropped by the kernel, as on any full
 * queue). `sluicectl cleanup` deletes it like any link.
 */
import { closeSync, constants, openSync } from "node:fs";
import { createRequire } from "node:module";

const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** struct ifreq: char ifr_name[IFNAMSIZ = 16], then a union whose first member is short ifr_flags; 40 bytes in all. */
const IFREQ_SIZE = 40;

interface Koffi {
  load(path: string): { func(signature: string): (...args: unknown[]) => number };
  errno(): number;
}

let ioctl: ((fd: number, req: number, arg: Buffer | number) => number) | undefined;
let errno: (() => number) | undefined;

function libcIoctl(): (fd: number, req: number, arg: Buffer | number) => number {
  if (!ioctl) {
    // Loaded on first use: only the udp backend needs a native FFI, and only on Linux.
    const koffi = createRequire(__filename)("koffi") as Koffi;
    const libc = koffi.load("libc.so.6");
    const withPointer = libc.func("int ioctl(int fd, unsigned long request, void *arg)");
    const withInt = libc.func("int ioctl(int fd, unsigned long request, unsigned long arg)");
    ioctl = (fd, req, arg) => (typeof arg === "number" ? withInt(fd, req, arg) : withPointer(fd, req, arg));
    errno = () => koffi.errno();
  }
  return ioctl;
}

/** Opens (creating if need be) the persistent TUN device `name`, packets without the 4-byte info header; returns its file descriptor. */
export function openTun(name: string): number {
  if (Buffer.byteLength(name) > 15) throw new Error(`TUN device name ${name} is longer than 15 bytes`);
  let fd: number;
  try {
    fd = openSync("/dev/net/tun", constants.O_RDWR);
  } catch (err) {
    throw new Error(`cannot open /dev/net/tun: ${(err as Error).message} (the agent needs the TUN device: mount /dev/net/tun into its container)`);
  }
  try {
    const call = libcIoctl();
    const ifr = Buffer.alloc(IFREQ_SIZE);
    ifr.write(name, 0, "utf8");
    ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI, 16);
    if (call(fd, TUNSETIFF, ifr) !== 0) throw new Error(`TUNSETIFF ${name}: errno ${errno?.() ?? "?"} (a device of that name that is no TUN device, or one opened by another process?)`);
    if (call(fd, TUNSETPERSIST, 1) !== 0) throw new Error(`TUNSETPERSIST ${name}: errno ${errno?.() ?? "?"}`);
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
