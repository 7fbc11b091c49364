/**
 * A helper process for the dashboard's scale test: registers `--count`
 * simulated endpoints on a hub, each over its own mutual-TLS HTTP/2 session
 * with a control stream (the hub allows one endpoint per session), using one
 * user certificate. Logs `{"msg":"ready","count":N}` on stderr once all are
 * online, then holds them until it is stopped.
 *
 * Run: `deno run -A tests/ui_sim_endpoints.ts --port=P --count=N --files=DIR --prefix=sim`
 * where DIR holds ca.crt, user.crt and user.key.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { HubClient, userTls } from "./hub_client.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string" },
    count: { type: "string" },
    files: { type: "string" },
    prefix: { type: "string", default: "sim" },
  },
});
const port = Number(values.port);
const count = Number(values.count);
const dir = values.files!;
const tls = userTls({
  ca: Deno.readTextFileSync(join(dir, "ca.crt")),
  certificate: Deno.readTextFileSync(join(dir, "user.crt")),
  privateKey: Deno.readTextFileSync(join(dir, "user.key")),
});

/** Registrations in flight at once: enough to be quick, few enough for a shared 2-core machine. */
const CONCURRENCY = 32;
const clients: HubClient[] = [];
let next = 0;
async function worker(): Promise<void> {
  while (next < count) {
    const i = next++;
    const name = `${values.prefix}-${String(i).padStart(5, "0")}`;
    const client = HubClient.connect(port, tls);
    clients.push(client);
    const control = await client.openControl(`${name}-id`, name);
    if (control.status !== 200) {
      throw new Error(
        `${name}: hub answered ${control.status} ${control.text} ${control.refused ?? ""}`,
      );
    }
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
console.error(JSON.stringify({ msg: "ready", count }));

const stop = () => {
  Promise.allSettled(clients.map((c) => c.close())).then(() => Deno.exit(0));
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
