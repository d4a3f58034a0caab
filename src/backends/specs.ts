/**
 * The backends' pure sides (src/backends/<name>/spec.ts), by flannel's `Backend.Type`.
 * A new backend: its folder, a line here and one in kernels.ts.
 */
import { ConfigError } from "../config/errors.js";
import { type HostGwBackend, hostGwSpec } from "./hostGw/spec.js";
import { type IpipBackend, ipipSpec } from "./ipip/spec.js";
import { type UdpBackend, udpSpec } from "./udp/spec.js";
import type { BackendSpec, RawBackend } from "./types.js";
import { type VxlanBackend, vxlanSpec } from "./vxlan/spec.js";
import { type WireguardBackend, wireguardSpec } from "./wireguard/spec.js";

/** Every backend's parsed config. */
export type Backend = VxlanBackend | HostGwBackend | WireguardBackend | IpipBackend | UdpBackend;
export type BackendType = Backend["type"];

const SPECS: { readonly [T in BackendType]: BackendSpec<Extract<Backend, { type: T }>> } = {
  vxlan: vxlanSpec,
  "host-gw": hostGwSpec,
  wireguard: wireguardSpec,
  ipip: ipipSpec,
  udp: udpSpec,
};

export const SUPPORTED_BACKENDS = Object.keys(SPECS) as BackendType[];

/** The spec of a parsed backend, typed for it. */
export function specOf<B extends Backend>(b: B): BackendSpec<B> {
  return SPECS[b.type] as unknown as BackendSpec<B>;
}

/** Parses the Backend section (`Type` defaults to vxlan, as flannel's): the type's own keys, errors naming them. */
export function parseBackend(raw: RawBackend | undefined, source: string): Backend {
  const typeText = raw?.["Type"] ?? "vxlan";
  if (typeof typeText !== "string") throw new ConfigError("Backend.Type", "must be a string naming the backend", source);
  const type = typeText.toLowerCase();
  if (!(type in SPECS)) throw new ConfigError("Backend.Type", `"${typeText}" is not supported (supported: ${SUPPORTED_BACKENDS.join(", ")})`, source);
  return SPECS[type as BackendType].parse(raw ?? {}, source);
}

/** A parsed backend for people to read (`sluicectl`, logs, goldens): its secrets redacted. */
export function describeBackend(b: Backend): Record<string, unknown> {
  const out: Record<string, unknown> = { ...b };
  for (const k of specOf(b).secrets ?? []) if (out[k] !== undefined) out[k] = "(redacted)";
  return out;
}
