/**
 * The backends' node sides (src/backends/<name>/kernel.ts), by type: the line beside
 * each one in specs.ts.
 */
import { ipipKernel } from "./ipip/kernel.js";
import { hostGwKernel } from "./hostGw/kernel.js";
import { udpKernel } from "./udp/kernel.js";
import type { BackendKernel } from "./kernelTypes.js";
import type { Backend, BackendType } from "./specs.js";
import { vxlanKernel } from "./vxlan/kernel.js";
import { wireguardKernel } from "./wireguard/kernel.js";

const KERNELS: { readonly [T in BackendType]: BackendKernel<Extract<Backend, { type: T }>> } = {
  vxlan: vxlanKernel,
  "host-gw": hostGwKernel,
  wireguard: wireguardKernel,
  ipip: ipipKernel,
  udp: udpKernel,
};

export function kernelOf<B extends Backend>(b: B): BackendKernel<B> {
  return KERNELS[b.type] as unknown as BackendKernel<B>;
}

/** Every backend's node side, whatever the configured one is (cleanup removes all of ours). */
export const ALL_KERNELS: readonly BackendKernel[] = Object.values(KERNELS) as unknown as BackendKernel[];
