/**
 * The agent's side of the files it shares with sluice-cni on the node (layout in
 * src/model/localEndpoints.ts):
 *
 * - LocalEndpointWatcher reads the WorkloadEndpointRecords the plugin writes per wired pod:
 *   fs.watch on the directory for promptness, plus a periodic rescan for anything a watch
 *   misses (a directory made after start, an overflowed inotify queue). A watch event that
 *   names a record re-reads that record only: a node with hundreds of pods would otherwise
 *   read and validate every record to learn of one new pod, on the path of its ADD's
 *   policy-ready wait. The periodic rescan and an event without a name read them all.
 *   A file that does not parse or validate (a partial write by something other than the
 *   plugin, a newer format) keeps its last good version, or is ignored if it never had
 *   one. In Kubernetes mode these records are how a new local pod's address reaches the
 *   policy source before the kubelet reports it to the API server.
 * - PolicyReadyMarks writes a pod's ready mark after each filter apply that programmed its
 *   chains with its addresses, naming the container whose record the chains were rendered
 *   from, and removes the marks of endpoints that went; sluice-cni's ADD waits for the mark
 *   naming its own container when policyReadyTimeoutMs is set. In etcd mode the agent also
 *   publishes these records to etcd (src/datastore/etcdEndpointPublisher.ts).
 */
import { EventEmitter } from "node:events";
import { type FSWatcher, watch } from "node:fs";
import { mkdir, readFile, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { parseWorkloadEndpointRecord } from "../config/endpointSchema.js";
import type { LocalEndpointRecords } from "../datastore/kubePolicySource.js";
import type { WorkloadEndpointRecord } from "../model/endpoint.js";
import { type PolicyStatus, formatPolicyStatus, formatReadyMark, localEndpointsDir, policyReadyDir, policyReadyPath, policyStatusPath } from "../model/localEndpoints.js";
import { writeFileAtomic } from "./subnetEnv.js";
import { SerialRerun } from "../util/serialRerun.js";


export interface LocalEndpointWatcherOptions {
  /** The plugin's data dir (the agent's --cni-data-dir). */
  dataDir: string;
  /** Every record in the directory is this node's, whatever name the plugin was configured with. */
  nodeName: string;
  log: Logger;
  rescanMs?: number;
}

/** A record's file name (`<hostIface>.json`); the plugin's temp files start with ".". */
const isRecordName = (name: string): boolean => name.endsWith(".json") && !name.startsWith(".");

const isErrno = (err: unknown, code: string): boolean => (err as NodeJS.ErrnoException | null)?.code === code;

export class LocalEndpointWatcher extends EventEmitter implements LocalEndpointRecords {
  readonly dir: string;
  private byFile = new Map<string, WorkloadEndpointRecord>();
  private list: WorkloadEndpointRecord[] = [];
  private key = "[]";
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private readonly scans = new SerialRerun(() => this.scanOnce(), () => this.stopped);
  private stopped = false;
  /** Files already reported as invalid (by name and content), so a bad file is logged once. */
  private reported = new Set<string>();
  /** What the next scan reads: the record files watch events named since the last one, or all of them. */
  private dirty: Set<string> | "all" = "all";

  constructor(private readonly o: LocalEndpointWatcherOptions) {
    super();
    this.dir = localEndpointsDir(o.dataDir);
  }

  /**
   * Scans once and starts watching. Never fails: a missing directory is an empty one until
   * it appears. The directory is made here if it can be, so that the watch holds from the
   * first pod on (a watch can only be set on a directory that exists; otherwise the first
   * pod would wait for the periodic rescan).
   */
  async start(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (err) {
      this.o.log.warn({ dir: this.dir, err: (err as Error).message }, "cannot create the local endpoint records' directory; watching for it");
    }
    await this.rescan();
    this.timer = setInterval(() => void this.rescan(), this.o.rescanMs ?? 5000);
    this.timer.unref();
  }

  records(): WorkloadEndpointRecord[] {
    return this.list;
  }

  /** Reads every record now (serialized: a request during a scan runs one more scan after it). */
  rescan(): Promise<void> {
    this.dirty = "all";
    return this.scans.request();
  }

  /** A watch event: `filename` is the entry that changed, or null when the kernel did not say. */
  private touched(filename: string | null): void {
    if (filename === null) this.dirty = "all";
    else if (!isRecordName(filename)) return; // a temp file: its rename into place names the record
    else if (this.dirty !== "all") this.dirty.add(filename);
    this.soon();
  }

  private ensureWatch(): void {
    if (this.watcher || this.stopped) return;
    try {
      this.watcher = watch(this.dir, { persistent: false }, (_event, filename) => this.touched(filename));
      // Records written before the watch held are named by no event.
      this.dirty = "all";
      this.watcher.on("error", (err) => {
        this.o.log.warn({ dir: this.dir, err: err.message }, "watching the local endpoint records failed; rescanning periodically");
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      // The directory does not exist yet (no pod wired on this node): the next rescan tries again.
      if (!isErrno(err, "ENOENT")) this.o.log.warn({ dir: this.dir, err: (err as Error).message }, "cannot watch the local endpoint records");
    }
  }

  private soon(): void {
    if (this.debounce || this.stopped) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.scans.request();
    }, 5);
  }

  private async scanOnce(): Promise<void> {
    if (this.stopped) return;
    this.ensureWatch();
    const dirty = this.dirty;
    this.dirty = new Set();
    // Everything: the directory's records from nothing. Named files: those, over what we hold.
    let names: Iterable<string>;
    let next: Map<string, WorkloadEndpointRecord>;
    if (dirty === "all") {
      try {
        names = (await readdir(this.dir)).filter(isRecordName);
      } catch (err) {
        if (!isErrno(err, "ENOENT")) {
          this.o.log.warn({ dir: this.dir, err: (err as Error).message }, "cannot list the local endpoint records; keeping the last ones");
          this.dirty = "all"; // the next scan (event or timer) tries the whole directory again
          return;
        }
        names = [];
      }
      next = new Map();
    } else {
      if (dirty.size === 0) return;
      names = dirty;
      next = new Map(this.byFile);
    }
    for (const name of names) {
      const r = await this.readRecord(name);
      if (r) next.set(name, r);
      else next.delete(name);
    }
    this.byFile = next;
    const list = [...next.values()].sort((a, b) => (a.hostIface < b.hostIface ? -1 : a.hostIface > b.hostIface ? 1 : 0));
    const key = JSON.stringify(list);
    if (key === this.key) return;
    this.key = key;
    this.list = list;
    this.o.log.debug({ records: list.length }, "local endpoint records changed");
    this.emit("changed");
  }

  /** The record in `name`, its last good version when it does not read as one now, or undefined. */
  private async readRecord(name: string): Promise<WorkloadEndpointRecord | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.dir, name), "utf8");
    } catch (err) {
      return isErrno(err, "ENOENT") ? undefined : this.byFile.get(name);
    }
    let reason: string;
    try {
      const r = parseWorkloadEndpointRecord(JSON.parse(text));
      if (r.ok && `${r.record.hostIface}.json` === name) {
        this.reported.delete(name);
        return { ...r.record, node: this.o.nodeName };
      }
      reason = r.ok ? `its hostIface ${r.record.hostIface} does not match the file name` : r.reason;
    } catch (err) {
      reason = `not JSON (${(err as Error).message})`;
    }
    const last = this.byFile.get(name);
    if (!this.reported.has(name)) {
      this.reported.add(name);
      this.o.log.warn({ file: join(this.dir, name), reason, keptLastGood: last !== undefined }, "ignoring an invalid local endpoint record");
    }
    return last;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
  }
}

export interface ProgrammedEndpoint {
  hostIface: string;
  /** The container of the record the chains were rendered from. */
  containerId: string;
  ips: readonly string[];
}

export class PolicyReadyMarks {
  readonly dir: string;
  /** What this process wrote and still finds in place (the plugin only ever removes marks). */
  private readonly written = new Map<string, string>();

  constructor(
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {
    this.dir = policyReadyDir(dataDir);
  }

  /**
   * Makes the marks exactly `programmed`: writes the missing or different ones and removes
   * the rest (a previous run's included). The directory is listed every time, so a mark the
   * plugin removed (a new pod of the same name) is written again. Errors are logged, never thrown: a mark
   * that is missing only delays a pod's start.
   */
  async sync(programmed: readonly ProgrammedEndpoint[]): Promise<void> {
    try {
      // An endpoint without a container (a pod the API server reported, with no record here) is nobody's to wait for.
      const want = new Map(programmed.filter((e) => e.containerId !== "").map((e) => [e.hostIface, formatReadyMark(e.containerId, e.ips)]));
      let present: string[];
      try {
        present = (await readdir(this.dir)).filter((n) => !n.startsWith("."));
      } catch (err) {
        if (!isErrno(err, "ENOENT")) throw err;
        if (want.size === 0) return;
        await mkdir(this.dir, { recursive: true });
        present = [];
      }
      for (const name of present) {
        if (want.has(name)) continue;
        await unlink(join(this.dir, name)).catch((err: unknown) => {
          if (!isErrno(err, "ENOENT")) throw err;
        });
      }
      const here = new Set(present);
      for (const name of [...this.written.keys()]) if (!want.has(name) || !here.has(name)) this.written.delete(name);
      for (const [hostIface, text] of want) {
        if (this.written.get(hostIface) === text) continue;
        await writeFileAtomic(policyReadyPath(this.dataDir, hostIface), text);
        this.written.set(hostIface, text);
      }
    } catch (err) {
      this.log.warn({ dir: this.dir, err: (err as Error).message }, "cannot update the policy-ready marks; will retry");
    }
  }
}

/**
 * policy-status.json: the revision in force on this node, rewritten after every filter
 * apply with policy. Errors are logged, never thrown: the file informs, it gates nothing.
 */
export class PolicyStatusFile {
  readonly path: string;
  private failing = false;

  constructor(
    dataDir: string,
    private readonly log: Logger,
  ) {
    this.path = policyStatusPath(dataDir);
  }

  async write(s: PolicyStatus): Promise<void> {
    try {
      await mkdir(join(this.path, ".."), { recursive: true });
      await writeFileAtomic(this.path, formatPolicyStatus(s));
      if (this.failing) this.log.info({ path: this.path }, "policy status written again");
      this.failing = false;
    } catch (err) {
      // Once per run of failures: an apply every few seconds must not fill the log.
      if (!this.failing) this.log.warn({ path: this.path, err: (err as Error).message }, "cannot write the policy status; will retry");
      this.failing = true;
    }
  }
}
