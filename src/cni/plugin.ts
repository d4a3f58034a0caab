/**
 * sluice-cni's commands (CNI spec 1.1.0): ADD, DEL, CHECK, VERSION, STATUS, GC.
 * runCni takes the environment and stdin as the runtime passes them and returns what
 * goes to stdout and the exit code; src/bin/sluice-cni.ts only does the I/O.
 *
 * ADD either completes or leaves nothing behind: every step registers its undo, and a
 * failure runs them in reverse (local record, veth pair, addresses).
 *
 * The plugin talks to no datastore, in either mode: it writes the pod's record on the
 * node (localRecords.ts) and the node's agent takes it from there (Kubernetes mode: joins
 * it with the Pod from the API server; etcd mode: publishes it as the pod's workload
 * endpoint, with the agent's own etcd credentials). So no node needs an etcd that answers
 * without credentials, and no ADD pays for loading an etcd client. The netconf keys of
 * the plugin that did write to etcd (etcdEndpoints, etcdPrefix) are accepted, ignored and
 * warned about.
 *
 * Removal is compare-and-delete: DEL, GC and a rollback remove only what names their own
 * container, under the node lock (nodeLock.ts), so a DEL of an old container never takes
 * the files of an ADD of the same pod's new one.
 */
import { existsSync, readFileSync } from "node:fs";
import { parseSubnetEnv, type SubnetEnv } from "../agent/subnetEnv.js";
import { type CniNetConf, type CniVersion, LATEST_CNI_VERSION, SUPPORTED_CNI_VERSIONS, isSupportedCniVersion, parseCniNetConf } from "../config/cniConfig.js";
import { ConfigError } from "../config/errors.js";
import { type IpamOwner, NoFreeAddressError, PodIpam } from "../ipam/podIpam.js";
import { type WorkloadEndpointRecord, hostIfaceName } from "../model/endpoint.js";
import { formatCidr, formatIp, type IpAddr } from "../model/ip.js";
import { localEndpointPath } from "../model/localEndpoints.js";
import { clearReadyMark, gcLocalRecords, readLocalRecord, removeLocalRecord, removeLocalRecordsOf, waitPolicyReady, writeLocalRecord } from "./localRecords.js";
import { type CniEnv, podIdentity, readCniEnv } from "./env.js";
import { withNodeLock } from "./nodeLock.js";
import { CNI_ERR, CniError, errorResult } from "./errors.js";
import { type CniLog, makeCniLog } from "./log.js";
import { type CniResult, decodeResult, encodeResult, mergeResults } from "./result.js";
import {
  GATEWAY_V4,
  GATEWAY_V6,
  HOST_VETH_MAC,
  type WiringPlan,
  deleteHostLinks,
  deletePodIface,
  getHostLink,
  hostLinkExists,
  inspectHostSide,
  inspectPodSide,
  listOwnedHostVeths,
  parseOwnerAlias,
  podToken,
  randomPodMac,
  readProxyArp,
  wirePod,
} from "./wiring.js";

export interface CniOutput {
  stdout: string;
  exitCode: number;
}

const DEFAULT_MTU = 1500;
const VALID_ATTACHMENTS = "cni.dev/valid-attachments";

interface Ctx {
  env: CniEnv;
  conf: CniNetConf;
  log: CniLog;
}

const ok = (value?: unknown): CniOutput => ({ stdout: value === undefined ? "" : JSON.stringify(value) + "\n", exitCode: 0 });

const versionAtLeast = (v: CniVersion, min: CniVersion): boolean => SUPPORTED_CNI_VERSIONS.indexOf(v) >= SUPPORTED_CNI_VERSIONS.indexOf(min);

/** Runs one plugin invocation. Never throws: failures become a CNI error result and exit code 1. */
export async function runCni(processEnv: NodeJS.ProcessEnv, stdin: string, log: CniLog = makeCniLog()): Promise<CniOutput> {
  let version: string = LATEST_CNI_VERSION;
  const started = Date.now();
  try {
    const env = readCniEnv(processEnv);
    log.bind({ cmd: env.command, ...(env.containerId ? { containerId: env.containerId } : {}) });
    if (env.command === "VERSION") return ok({ cniVersion: LATEST_CNI_VERSION, supportedVersions: SUPPORTED_CNI_VERSIONS });

    let raw: unknown;
    try {
      raw = JSON.parse(stdin);
    } catch (err) {
      throw new CniError(CNI_ERR.decode, `decoding the network config from stdin failed: ${(err as Error).message}`);
    }
    const requested = typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>)["cniVersion"] : undefined;
    if (!isSupportedCniVersion(requested)) {
      throw new CniError(CNI_ERR.incompatibleVersion, `incompatible CNI version ${JSON.stringify(requested ?? null)} (supported: ${SUPPORTED_CNI_VERSIONS.join(", ")})`);
    }
    version = requested;
    let conf: CniNetConf;
    try {
      conf = parseCniNetConf(raw, processEnv);
    } catch (err) {
      if (err instanceof ConfigError) throw new CniError(CNI_ERR.invalidNetConf, err.message);
      throw err;
    }
    log.setLevel(conf.logLevel);
    if (conf.retiredKeys.length > 0) {
      log.warn(
        { ignored: conf.retiredKeys },
        `network config: ${conf.retiredKeys.join(", ")} ${conf.retiredKeys.length > 1 ? "are" : "is"} ignored: sluice-cni no longer talks to etcd (the node's agent publishes the pod's workload endpoint from its record on the node, with its own etcd credentials); remove ${conf.retiredKeys.length > 1 ? "them" : "it"} from the conflist`,
      );
    }
    if (env.command === "CHECK" && !versionAtLeast(conf.cniVersion, "0.4.0")) throw new CniError(CNI_ERR.incompatibleVersion, `config version ${conf.cniVersion} does not allow CHECK (needs 0.4.0 or later)`);
    if ((env.command === "STATUS" || env.command === "GC") && !versionAtLeast(conf.cniVersion, "1.1.0")) throw new CniError(CNI_ERR.incompatibleVersion, `config version ${conf.cniVersion} does not allow ${env.command} (needs 1.1.0)`);

    const ctx: Ctx = { env, conf, log };
    let out: CniOutput;
    switch (env.command) {
      case "ADD":
        out = ok(encodeResult(await cmdAdd(ctx), conf.cniVersion));
        break;
      case "DEL":
        await cmdDel(ctx);
        out = ok();
        break;
      case "CHECK":
        await cmdCheck(ctx);
        out = ok();
        break;
      case "STATUS":
        await cmdStatus(ctx);
        out = ok();
        break;
      case "GC":
        await cmdGc(ctx);
        out = ok();
        break;
    }
    log.info({ ms: Date.now() - started }, `${env.command} done`);
    return out;
  } catch (err) {
    const res = errorResult(err, version);
    log.error({ code: res.code, ms: Date.now() - started, ...(err instanceof CniError ? {} : { err }) }, res.msg);
    return { stdout: JSON.stringify(res) + "\n", exitCode: 1 };
  }
}

/** subnet.env, read synchronously (readSubnetEnv's promise API would start the thread pool for one small file). */
function loadSubnetEnv(conf: CniNetConf, code: number): Partial<SubnetEnv> {
  let env: Partial<SubnetEnv> | undefined;
  try {
    env = parseSubnetEnv(readFileSync(conf.subnetFile, "utf8"));
  } catch {
    env = undefined;
  }
  if (!env) throw new CniError(code, `subnet file ${conf.subnetFile} is missing or unreadable (the Sluice agent writes it once this node has a subnet)`);
  if (!env.subnet && !env.ipv6Subnet) throw new CniError(code, `subnet file ${conf.subnetFile} has no FLANNEL_SUBNET (nor FLANNEL_IPV6_SUBNET)`);
  return env;
}

/** File-system trouble (the address store, the local endpoint records) is an I/O error (code 5); an exhausted subnet is ours (101). */
function ipamCall<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CniError) throw err;
    if (err instanceof NoFreeAddressError) throw new CniError(CNI_ERR.noFreeAddress, err.message);
    throw new CniError(CNI_ERR.io, `${what}: ${(err as Error).message}`);
  }
}

const ownerOf = (env: CniEnv): IpamOwner => ({ containerId: env.containerId, ifName: env.ifName });

/**
 * Removes a host veth named `name` left by an earlier container of the same pod (same
 * namespace and name, by its alias; for an alias of an older plugin, which names no pod, by
 * the pod's record on the node); refuses anything else: a veth that is not ours, this
 * container's own (a repeated ADD), or another pod's whose name hashes to the same host
 * interface name.
 */
function clearStaleHostLink(ctx: Ctx, name: string, pod: { namespace: string; pod: string }): void {
  if (!hostLinkExists(name)) return;
  const link = getHostLink(name);
  if (!link) return;
  const owner = parseOwnerAlias(link.alias);
  if (!owner) throw new CniError(CNI_ERR.wiring, `host interface ${name} exists and was not made by sluice-cni (alias ${JSON.stringify(link.alias ?? "")}); not touching it`);
  if (owner.containerId === ctx.env.containerId) {
    throw new CniError(CNI_ERR.alreadyAllocated, `container ${ctx.env.containerId} already has a sluice interface (${owner.ifName}, host side ${name}); one per pod`);
  }
  const ours = podToken(pod.namespace, pod.pod);
  let samePod: boolean;
  if (owner.pod !== undefined) {
    samePod = owner.pod === ours;
  } else {
    const record = readLocalRecord(ctx.conf.dataDir, name);
    samePod = record?.containerId === owner.containerId && record.namespace === pod.namespace && record.pod === pod.pod;
  }
  if (!samePod) {
    const whose = owner.pod !== undefined ? `pod ${owner.pod}` : `a container whose pod no record on this node names (${localEndpointPath(ctx.conf.dataDir, name)})`;
    throw new CniError(CNI_ERR.wiring, `host interface ${name} belongs to ${whose} (container ${owner.containerId}), not to ${pod.namespace}/${pod.pod}: two pods' names map to the same host interface name; not touching it (DEL or GC that container first)`);
  }
  ctx.log.warn({ hostIface: name, staleContainerId: owner.containerId }, "removing the host veth of an earlier container of this pod");
  deleteHostLinks([name]);
}

async function cmdAdd(ctx: Ctx): Promise<CniResult> {
  const { env, conf, log } = ctx;
  const identity = podIdentity(env);
  const { namespace, pod } = identity;
  const hostIface = hostIfaceName(namespace, pod);
  const subnets = loadSubnetEnv(conf, CNI_ERR.tryAgainLater);
  const prev = conf.prevResult ? decodeResult(conf.prevResult) : undefined;
  if (!existsSync(env.netns)) throw new CniError(CNI_ERR.invalidEnv, `CNI_NETNS ${env.netns} does not exist`);

  const ipam = PodIpam.forNetwork(conf.dataDir, conf.name);
  const owner = ownerOf(env);
  // A repeated ADD shows as a host veth that this container already owns (refused with
  // 105 here). No scan of the address store: it costs a file read per pod on the node, and
  // an address left by an ADD that died before wiring is released by DEL or GC anyway.
  clearStaleHostLink(ctx, hostIface, identity);
  // Only a mark the agent writes after this point may count as this container's.
  if (conf.policyReadyTimeoutMs > 0) ipamCall("clearing the policy-ready mark", () => clearReadyMark(conf.dataDir, hostIface, env.containerId));

  const undo: Array<{ what: string; run: () => Promise<unknown> | unknown }> = [];
  // Releasers of addresses and records hold the node lock (nodeLock.ts).
  const locked = <T>(fn: () => T): Promise<T> => withNodeLock(conf.dataDir, fn);
  try {
    let v4: IpAddr | undefined;
    let v6: IpAddr | undefined;
    if (subnets.subnet) {
      const subnet = subnets.subnet;
      v4 = ipamCall(`allocating from ${formatCidr(subnet)}`, () => ipam.allocate(subnet, owner));
      const ip = v4;
      undo.push({ what: `release ${formatIp(ip)}`, run: () => locked(() => ipam.release(ip, owner)) });
    }
    if (subnets.ipv6Subnet) {
      const subnet = subnets.ipv6Subnet;
      v6 = ipamCall(`allocating from ${formatCidr(subnet)}`, () => ipam.allocate(subnet, owner));
      const ip = v6;
      undo.push({ what: `release ${formatIp(ip)}`, run: () => locked(() => ipam.release(ip, owner)) });
    }
    const plan: WiringPlan = {
      network: conf.name,
      containerId: env.containerId,
      pod: identity,
      netns: env.netns,
      podIface: env.ifName,
      hostIface,
      podMac: randomPodMac(),
      mtu: conf.mtu ?? subnets.mtu ?? DEFAULT_MTU,
      ipv4: v4 ? formatIp(v4) : undefined,
      ipv6: v6 ? formatIp(v6) : undefined,
    };
    wirePod(plan); // removes its own partial work when it fails
    undo.push({ what: `delete ${hostIface}`, run: () => deleteHostLinks([hostIface]) });

    const record: WorkloadEndpointRecord = {
      node: conf.nodeName,
      namespace,
      pod,
      containerId: env.containerId,
      ifName: env.ifName,
      hostIface,
      ips: [plan.ipv4, plan.ipv6].filter((x): x is string => x !== undefined),
      mac: plan.podMac,
    };
    // Registered first: a rename that failed midway leaves at most a temp file (GC's).
    undo.push({ what: `remove the local record of ${hostIface}`, run: () => locked(() => removeLocalRecord(conf.dataDir, hostIface, owner)) });
    await locked(() => ipamCall("writing the local endpoint record", () => writeLocalRecord(conf.dataDir, record)));
    if (conf.policyReadyTimeoutMs > 0) {
      const waitStarted = Date.now();
      if (!(await waitPolicyReady(conf.dataDir, hostIface, env.containerId, record.ips, conf.policyReadyTimeoutMs))) {
        throw new CniError(
          CNI_ERR.tryAgainLater,
          `the Sluice agent on node ${conf.nodeName} did not program the policy of ${namespace}/${pod} (${hostIface}, ${record.ips.join(", ")}) within policyReadyTimeoutMs=${conf.policyReadyTimeoutMs}; the pod was unwired so that it never runs unpoliced (is the agent running and ready on this node?)`,
        );
      }
      log.debug({ hostIface, ms: Date.now() - waitStarted }, "policy ready");
    }
    log.info({ hostIface, ipv4: plan.ipv4, ipv6: plan.ipv6, namespace, pod }, "pod wired");

    const ours: CniResult = {
      interfaces: [
        { name: hostIface, mac: HOST_VETH_MAC, mtu: plan.mtu },
        { name: env.ifName, mac: plan.podMac, mtu: plan.mtu, sandbox: env.netns },
      ],
      ips: [...(plan.ipv4 ? [{ address: `${plan.ipv4}/32`, interface: 1 }] : []), ...(plan.ipv6 ? [{ address: `${plan.ipv6}/128`, interface: 1 }] : [])],
      routes: [...(plan.ipv4 ? [{ dst: "0.0.0.0/0", gw: GATEWAY_V4 }] : []), ...(plan.ipv6 ? [{ dst: "::/0", gw: GATEWAY_V6 }] : [])],
      dns: {},
    };
    return mergeResults(prev, ours);
  } catch (err) {
    for (const u of undo.reverse()) {
      try {
        await u.run();
      } catch (e) {
        log.error({ err: e }, `rollback step failed: ${u.what}`);
      }
    }
    throw err;
  }
}

async function cmdDel(ctx: Ctx): Promise<void> {
  const { env, conf, log } = ctx;
  const owner = ownerOf(env);
  const ipam = PodIpam.forNetwork(conf.dataDir, conf.name);

  // Order: links, then the local record, then the addresses. The address is freed last so
  // that a failed DEL never leaves a free address that a stale record still claims; the
  // runtime retries DEL, and the retry finishes the job.
  // The pod end, inside the pod: deleting it takes the host end (and its routes) along.
  const podDeleted = env.netns ? deletePodIface(env.netns, env.ifName) : false;
  let identity: { namespace: string; pod: string } | undefined;
  try {
    identity = podIdentity(env);
  } catch {
    identity = undefined; // names we could never have wired
  }
  if (!podDeleted && identity) {
    // The namespace is gone or was not passed: the host end may still exist (e.g. the namespace is held elsewhere).
    const hostIface = hostIfaceName(identity.namespace, identity.pod);
    if (hostLinkExists(hostIface)) {
      const link = getHostLink(hostIface);
      const o = parseOwnerAlias(link?.alias);
      if (o && o.network === conf.name && o.containerId === env.containerId && o.ifName === env.ifName) deleteHostLinks([hostIface]);
    }
  }

  // Each file goes only if it still names this container when it goes: under the lock, no
  // ADD of the pod's next container can write its record between the check and the removal.
  const released = await withNodeLock(conf.dataDir, () => {
    ipamCall("removing the local endpoint record", () => {
      const removed = identity ? removeLocalRecord(conf.dataDir, hostIfaceName(identity.namespace, identity.pod), owner) : false;
      // ADD may have had pod names DEL was not given: find the record by container.
      if (!removed && !env.args.has("K8S_POD_NAME")) removeLocalRecordsOf(conf.dataDir, owner);
    });
    return ipamCall("releasing addresses", () => ipam.releaseByOwner(owner));
  });
  log.info({ released: released.map((ip) => formatIp(ip)), podDeleted }, "pod unwired");
}

async function cmdCheck(ctx: Ctx): Promise<void> {
  const { env, conf } = ctx;
  if (!conf.prevResult) throw new CniError(CNI_ERR.invalidNetConf, "network config: prevResult: is required for CHECK");
  const prev = decodeResult(conf.prevResult);
  const owner = ownerOf(env);
  const held = ipamCall("reading the address store", () => PodIpam.forNetwork(conf.dataDir, conf.name).findByOwner(owner));
  if (held.length === 0) throw new CniError(CNI_ERR.unknownContainer, `container ${env.containerId} interface ${env.ifName} has no address in network ${conf.name}`);
  const { namespace, pod } = podIdentity(env);
  const hostIface = hostIfaceName(namespace, pod);
  const v4 = held.find((ip) => ip.family === 4);
  const v6 = held.find((ip) => ip.family === 6);
  const problems: string[] = [];

  const podIdx = prev.interfaces.findIndex((i) => i.name === env.ifName && i.sandbox !== undefined && i.sandbox !== "");
  if (podIdx < 0) problems.push(`prevResult has no interface ${env.ifName} in a sandbox`);
  for (const ip of held) {
    const want = `${formatIp(ip)}/${ip.family === 4 ? 32 : 128}`;
    if (!prev.ips.some((p) => p.address === want)) problems.push(`prevResult lacks ${want}`);
  }

  const podSide = inspectPodSide(env.netns, env.ifName);
  if (typeof podSide === "string") problems.push(podSide);
  else {
    if (!podSide.link.up) problems.push(`${env.ifName} is down`);
    if (v4 && !podSide.addresses.includes(`${formatIp(v4)}/32`)) problems.push(`${env.ifName} lacks address ${formatIp(v4)}/32`);
    if (v6 && !podSide.addresses.includes(`${formatIp(v6)}/128`)) problems.push(`${env.ifName} lacks address ${formatIp(v6)}/128`);
    const has = (dst: string, gw: string | undefined): boolean => podSide.routes.some((r) => r.dst === dst && r.gateway === gw && (r.dev === undefined || r.dev === env.ifName));
    if (v4) {
      if (!has(GATEWAY_V4, undefined)) problems.push(`pod lacks the route ${GATEWAY_V4} dev ${env.ifName} scope link`);
      if (!has("default", GATEWAY_V4)) problems.push(`pod lacks the default route via ${GATEWAY_V4}`);
    }
    if (v6 && !has("default", GATEWAY_V6)) problems.push(`pod lacks the IPv6 default route via ${GATEWAY_V6}`);
  }

  const hostSide = inspectHostSide(hostIface);
  if (typeof hostSide === "string") problems.push(hostSide);
  else {
    const o = parseOwnerAlias(hostSide.link.alias);
    if (!o || o.containerId !== env.containerId || o.ifName !== env.ifName) problems.push(`host interface ${hostIface} belongs to ${hostSide.link.alias ?? "someone else"}`);
    if (!hostSide.link.up) problems.push(`host interface ${hostIface} is down`);
    if (v4 && !hostSide.routes.some((r) => r.dst === formatIp(v4) || r.dst === `${formatIp(v4)}/32`)) problems.push(`node lacks the route ${formatIp(v4)}/32 dev ${hostIface}`);
    if (v6 && !hostSide.routes.some((r) => r.dst === formatIp(v6) || r.dst === `${formatIp(v6)}/128`)) problems.push(`node lacks the route ${formatIp(v6)}/128 dev ${hostIface}`);
    if (v4 && readProxyArp(hostIface) !== "1") problems.push(`proxy_arp is off on ${hostIface}`);
  }
  if (problems.length) throw new CniError(CNI_ERR.checkFailed, `CHECK failed for ${namespace}/${pod}: ${problems.join("; ")}`);
}

async function cmdStatus(ctx: Ctx): Promise<void> {
  const { conf } = ctx;
  const subnets = loadSubnetEnv(conf, CNI_ERR.pluginNotAvailable);
  const ipam = PodIpam.forNetwork(conf.dataDir, conf.name);
  for (const subnet of [subnets.subnet, subnets.ipv6Subnet]) {
    if (subnet && ipamCall("reading the address store", () => ipam.freeCount(subnet)) <= 0n) {
      throw new CniError(CNI_ERR.pluginNotAvailable, `no free address left in ${formatCidr(subnet)}`);
    }
  }
}

function validAttachments(conf: CniNetConf): IpamOwner[] {
  const raw = conf.raw[VALID_ATTACHMENTS];
  if (!Array.isArray(raw)) throw new CniError(CNI_ERR.invalidNetConf, `network config: ${VALID_ATTACHMENTS}: is required for GC (expected array)`);
  return raw.map((a, i) => {
    const o = a as Record<string, unknown> | null;
    if (typeof o?.["containerID"] !== "string" || typeof o["ifname"] !== "string") {
      throw new CniError(CNI_ERR.invalidNetConf, `network config: ${VALID_ATTACHMENTS}[${i}]: expected {"containerID": string, "ifname": string}`);
    }
    return { containerId: o["containerID"], ifName: o["ifname"] };
  });
}

async function cmdGc(ctx: Ctx): Promise<void> {
  const { conf, log } = ctx;
  const valid = validAttachments(conf);
  const keep = new Set(valid.map((v) => `${v.containerId}/${v.ifName}`));
  const stray = (listOwnedHostVeths()).filter((l) => l.owner.network === conf.name && !keep.has(`${l.owner.containerId}/${l.owner.ifName}`));
  deleteHostLinks(stray.map((l) => l.name));
  const { local, released } = await withNodeLock(conf.dataDir, () => {
    const gone = ipamCall("collecting local endpoint records", () => gcLocalRecords(conf.dataDir, keep));
    // Addresses last (as in DEL): a GC that fails midway must not free addresses stale records still claim.
    return { local: gone, released: ipamCall("collecting addresses", () => PodIpam.forNetwork(conf.dataDir, conf.name).gc(valid)) };
  });
  log.info({ released: released.map((a) => formatIp(a.ip)), veths: stray.map((l) => l.name), localRecords: local }, "garbage collected");
}
