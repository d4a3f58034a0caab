/**
 * zod schema of a WorkloadEndpointRecord (what sluice-cni writes under
 * `<prefix>/workloadendpoints/<node>/<namespace>/<pod>/<ifName>`). Readers validate every
 * stored record with it; unknown extra fields are dropped, not refused, so a newer
 * plugin that adds a field does not make an older agent ignore its pods.
 */
import { z } from "zod";
import type { WorkloadEndpointRecord } from "../model/endpoint.js";
import { dns1123Label, dns1123Subdomain, formatIssuePath } from "./k8sSchemas.js";
import { hostAddressText } from "./netSchemas.js";

/** A Linux interface name: 1-15 bytes, no '/', ':' or white space. */
const ifaceName = z
  .string()
  .min(1, "must not be empty")
  .max(15, "must be at most 15 characters (the kernel's limit)")
  .regex(/^[^/:\s]+$/, "must not contain '/', ':' or white space")
  .refine((s) => s !== "." && s !== "..", "must not be . or ..");


export const workloadEndpointRecord = z.object({
  node: z.string().min(1, "must not be empty").regex(/^[^/\s]+$/, "must not contain '/' or white space"),
  namespace: dns1123Label,
  pod: dns1123Subdomain,
  containerId: z.string().min(1, "must not be empty"),
  ifName: ifaceName,
  hostIface: ifaceName,
  // A pod address no host may have (0.0.0.0, ::, loopback, multicast) refuses the record:
  // it could only come from a broken plugin, and the kernel's hash:ip sets refuse some.
  ips: z.array(hostAddressText),
  mac: z
    .string()
    .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, "must be a MAC address such as 0a:58:0a:f4:01:05")
    .optional(),
});

// The schema's output must stay assignable to the shared contract.
const _check: (r: z.infer<typeof workloadEndpointRecord>) => WorkloadEndpointRecord = (r) => r;
void _check;

export function parseWorkloadEndpointRecord(raw: unknown): { ok: true; record: WorkloadEndpointRecord } | { ok: false; reason: string } {
  const r = workloadEndpointRecord.safeParse(raw);
  if (r.success) return { ok: true, record: r.data };
  return { ok: false, reason: r.error.issues.map((i) => `${formatIssuePath(i.path)}: ${i.message}`).join("; ") };
}
