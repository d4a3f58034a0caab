/** host-gw on the node: no devices, nothing kept; routes go through the underlay as the kernel picks. */
import type { BackendKernel } from "../kernelTypes.js";
import type { HostGwBackend } from "./spec.js";

export const hostGwKernel: BackendKernel<HostGwBackend> = {
  resolveLocal: () => Promise.resolve({}),
  ensureDevices: () => Promise.resolve({}),
  ownsLink: () => false,
};
