/** zod schemas for address text, shared by the network config and the agent's flags. */
import { z } from "zod";
import { type Family, parseCidr, parseIp } from "../model/ip.js";

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
