/**
 * The policy model as `sluicectl explain` loads it from a Kubernetes API server, from a
 * child process that may live in another network namespace (kubeModelLoaderMain.ts).
 * One process serves every load: each load is a fresh list of every kind, as explain's.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import type { PolicyModel } from "../../src/policy/model.js";

export interface LoaderRequest {
  id: number;
  apiUrl: string;
}
export type LoaderReply = { id: number; ok: true; model: PolicyModel } | { id: number; ok: false; error: string };

export class KubeModelLoader {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: PolicyModel) => void; reject: (e: Error) => void }>();
  private exited = false;
  private stderr = "";

  private constructor(private readonly child: ChildProcess) {
    child.stderr?.on("data", (c: Buffer) => (this.stderr += c.toString()));
    child.on("message", (m: LoaderReply | { ready: true }) => {
      if (!("id" in m)) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.model);
      else p.reject(new Error(m.error));
    });
    child.on("exit", (code) => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`the model loader exited with ${code}: ${this.stderr}`));
      this.pending.clear();
    });
  }

  /** Starts the loader, inside `netns` when given; resolves once it is ready for requests. */
  static async start(netns?: string): Promise<KubeModelLoader> {
    const script = join(__dirname, "kubeModelLoaderMain.js");
    const [cmd, argv] = netns ? ["ip", ["netns", "exec", netns, process.execPath, script]] : [process.execPath, [script]];
    const child = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe", "ipc"] });
    const loader = new KubeModelLoader(child);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the model loader did not start within 15 s: ${loader.stderr}`)), 15_000);
      child.once("message", () => {
        clearTimeout(t);
        resolve();
      });
      child.once("exit", (code) => {
        clearTimeout(t);
        reject(new Error(`the model loader exited with ${code}: ${loader.stderr}`));
      });
    });
    return loader;
  }

  load(apiUrl: string): Promise<PolicyModel> {
    if (this.exited) return Promise.reject(new Error(`the model loader exited: ${this.stderr}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, apiUrl } satisfies LoaderRequest);
    });
  }

  /** Ends the process (it holds the client library's keep-alive sockets). */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 2000);
    await gone;
    clearTimeout(t);
  }
}
