/**
 * CNI error results (spec 1.1.0, "Error"): a well-known code, a message and optional
 * details. Codes below 100 are the spec's; 100 and up are Sluice's own.
 */

export const CNI_ERR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidNetConf: 7,
  tryAgainLater: 11,
  pluginNotAvailable: 50,
  pluginNotAvailableDamaged: 51,
  /** Sluice: an unexpected failure (a bug, or the kernel refused something unforeseen). */
  internal: 100,
  /** Sluice: the node's pod subnet has no free address. */
  noFreeAddress: 101,
  /** Sluice: the kernel refused part of the pod's wiring (veth, address, route). */
  wiring: 102,
  // 103 was "the endpoint record could not be written to etcd": the plugin talks to no datastore any more.
  /** Sluice: CHECK found the pod's wiring different from what ADD set up. */
  checkFailed: 104,
  /** Sluice: this container/interface already holds an address (a repeated ADD). */
  alreadyAllocated: 105,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details?: string,
  ) {
    super(msg);
    this.name = "CniError";
  }
}

export interface CniErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function errorResult(err: unknown, cniVersion: string): CniErrorResult {
  if (err instanceof CniError) return { cniVersion, code: err.code, msg: err.message, ...(err.details ? { details: err.details } : {}) };
  const e = err instanceof Error ? err : new Error(String(err));
  return { cniVersion, code: CNI_ERR.internal, msg: e.message, ...(e.stack ? { details: e.stack } : {}) };
}
