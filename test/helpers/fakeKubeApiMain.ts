/**
 * Runs the fake Kubernetes API server (fakeKubeApi.ts) as its own process, e.g. inside a
 * network namespace: `node build/test/helpers/fakeKubeApiMain.js --host 10.0.0.1 --port 6443`.
 * Started with an IPC channel (FakeKubeApiProcess does that), it reports
 * `{ready, url, port}` once listening and answers control requests `{id, op, args}` with
 * `{id, ok, result|error}`. Without one it prints the URL and serves until SIGTERM.
 */
import { CONTROL_OPS, type ControlOp, FakeKubeApi, type IpcReady, type IpcReply, type IpcRequest } from "./fakeKubeApi.js";

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const bookmark = flag("bookmark-interval-ms");
  const api = await FakeKubeApi.start({
    host: flag("host") ?? "127.0.0.1",
    port: Number(flag("port") ?? 0),
    ...(bookmark !== undefined ? { bookmarkIntervalMs: Number(bookmark) } : {}),
    goneAsHttpStatus: process.argv.includes("--gone-as-http-status"),
  });
  const shutdown = (): void => {
    void api.stop().finally(() => process.exit(0));
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  if (!process.send) {
    process.stdout.write(`${api.url}\n`);
    return;
  }
  process.on("disconnect", shutdown); // the test process went away
  process.on("message", (m: IpcRequest) => {
    void (async () => {
      let reply: IpcReply;
      try {
        if (!(CONTROL_OPS as readonly string[]).includes(m.op)) throw new Error(`unknown control op ${m.op}`);
        const fn = (api[m.op as ControlOp] as (...a: unknown[]) => unknown).bind(api);
        reply = { id: m.id, ok: true, result: await fn(...m.args) };
      } catch (err) {
        reply = { id: m.id, ok: false, error: (err as Error).message };
      }
      process.send?.(reply);
    })();
  });
  process.send({ ready: true, url: api.url, port: api.port } satisfies IpcReady);
}

main().catch((err: unknown) => {
  process.stderr.write(`fake API server: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
