/**
 * The WireGuard device itself: the kernel's (`wireguard` link kind) where the kernel has
 * it, else Debian's wireguard-go (userspace, a TUN device of the same name, which keeps
 * running when the agent restarts and exits when its device is deleted). Either way
 * `wg` (wgTool.ts) configures it the same.
 */
import { spawn } from "node:child_process";
import type { Logger } from "pino";
import type { LinkInfo, Netlink } from "../../dataplane/netlink.js";
import { refuseForeignLink } from "../foreignLink.js";
import { wgShow } from "./wgTool.js";

/** Whether a link of this name is a WireGuard device: the kernel's kind, or wireguard-go's TUN. */
export const isWireguardLink = (link: LinkInfo): boolean => link.kind === "wireguard" || link.kind === "tun";

export async function ensureWireguardLink(nl: Netlink, name: string, mtu: number, log: Logger): Promise<LinkInfo> {
  let link = await nl.linkByName(name);
  refuseForeignLink(link, name, isWireguardLink, "WireGuard");
  if (link?.kind === "tun" && !(await wgShow(name).then(() => true, () => false))) {
    // A TUN of our name that no wireguard-go answers for (its daemon was killed): start over.
    log.warn({ device: name }, "WireGuard TUN device has no wireguard-go behind it; recreating it");
    await nl.deleteLink(link.index);
    link = undefined;
  }
  if (!link) {
    const how = await createDevice(nl, name, mtu);
    log.info({ device: name, implementation: how, mtu }, "created WireGuard device");
    link = await waitForLink(nl, name);
  }
  if (link.mtu !== mtu) await nl.setLink(link.index, { mtu });
  if (!link.up) await nl.setLink(link.index, { up: true });
  return link;
}

async function createDevice(nl: Netlink, name: string, mtu: number): Promise<"kernel" | "wireguard-go"> {
  try {
    await nl.createLink({ name, kind: "wireguard", mtu });
    return "kernel";
  } catch (kernelErr) {
    try {
      await startWireguardGo(name);
      return "wireguard-go";
    } catch (goErr) {
      throw new Error(`cannot create WireGuard device ${name}: the kernel has no WireGuard (${(kernelErr as Error).message}) and wireguard-go could not run it (${(goErr as Error).message}); load the wireguard module or install wireguard-go`);
    }
  }
}

/** Runs wireguard-go, which puts itself in the background once the device exists. */
function startWireguardGo(name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // Its banner asks for the kernel module where the kernel version suggests one; we already asked the kernel.
    const env = { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1" };
    const child = spawn("wireguard-go", [name], { stdio: "ignore", env });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("wireguard-go did not start within 10 s"));
    }, 10_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error((err as NodeJS.ErrnoException).code === "ENOENT" ? "wireguard-go is not installed" : err.message));
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`wireguard-go exited with ${signal ?? `code ${code ?? "?"}`}`));
    });
  });
}

async function waitForLink(nl: Netlink, name: string): Promise<LinkInfo> {
  for (let i = 0; i < 100; i++) {
    const link = await nl.linkByName(name);
    if (link) return link;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`WireGuard device ${name} did not appear after it was created`);
}
