/** zod schemas for address text, shared by the network config and the agent's flags. */
import { z } from "zod";
import { type Family, parseCidr, parseIp, unusableHostAddress } from "../model/ip.js";

function parses(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
}

/** An IP address; of the given family when one is named. */
export const ipText = (family?: Family) =>
  family === undefined
    ? z.string().refine((s) => parses(() => parseIp(s)), "must be an IP address")
    : z.string().refine((s) => parses(() => parseIp(s)) && parseIp(s).family === family, `must be an IPv${family} address`);

export const cidrText = z.string().refine((s) => parses(() => parseCidr(s)), "must be a CIDR such as 10.244.0.0/16");

/**
 * Why `text` cannot be a host's address (not an IP address, or one no host may have:
 * unspecified, loopback, multicast, broadcast; see unusableHostAddress), or undefined.
 */
export function hostAddressProblem(text: string): string | undefined {
  if (text.includes("/")) return `"${text}" is not an IP address (it has a prefix length)`;
  let addr;
  try {
    addr = parseIp(text);
  } catch {
    return `"${text}" is not an IP address`;
  }
  return unusableHostAddress(addr);
}

/** A host's own address: an IP address without a prefix length that a pod or node may carry. */
export const hostAddressText = z.string().superRefine((s, ctx) => {
  const problem = hostAddressProblem(s);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: `must be an IP address without a prefix length that a host may have (10.244.1.5 or fd00::5): ${problem}` });
});

/** A value dropped from an object on read, and why: the object stays, without that value. */
export interface DroppedValue {
  /** `status.podIPs[0].ip`, as ValidationIssue paths read. */
  path: string;
  message: string;
}
