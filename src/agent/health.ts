/** /healthz (the process is alive and its loops are turning) and /readyz (rules in place, subnet.env written). */
import { type Server, createServer } from "node:http";

export interface HealthState {
  live: () => boolean;
  ready: () => { ready: boolean; reasons: string[] };
}

export function startHealthServer(host: string, port: number, state: HealthState): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (code: number, body: unknown): void => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.url === "/healthz") return send(state.live() ? 200 : 503, { ok: state.live() });
    if (req.url === "/readyz") {
      const r = state.ready();
      return send(r.ready ? 200 : 503, r);
    }
    send(404, { error: "not found" });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
