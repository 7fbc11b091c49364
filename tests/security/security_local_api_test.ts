/**
 * The loopback APIs (the agent's and the CA's) against a web page and a
 * rebinding DNS name, driven with curl: a non-loopback `Host` is refused even
 * with the right token, and a foreign `Origin` is refused also for a
 * WebSocket upgrade and an event-stream request — no 101, no stream. Both
 * listen on loopback unless told otherwise; an agent told to listen on every
 * interface still wants its token, and a loopback `Host`.
 *
 * What already has tests (token and cookie 401s, the CA's Host and Origin
 * checks on its routes, the CA's token beyond loopback) is not repeated here.
 */
import assert from "node:assert/strict";
import { Harness, run } from "../fixtures/harness.ts";

/** curl with `headers`; returns the status and body (headers excluded). */
async function curl(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const args = ["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  const out = await run("curl", [...args, url], { allowFail: true });
  const at = out.stdout.lastIndexOf("\n");
  return { status: Number(out.stdout.slice(at + 1) || "0"), body: out.stdout.slice(0, at) };
}

const UPGRADE = {
  connection: "Upgrade",
  upgrade: "websocket",
  "sec-websocket-version": "13",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
};
const EVENT_STREAM = { accept: "text/event-stream", "cache-control": "no-cache" };
const EVIL = "http://evil.example";

function code(body: string): string | undefined {
  try {
    return JSON.parse(body).error?.code;
  } catch {
    return undefined;
  }
}

Deno.test("agent and CA refuse rebinding Hosts and cross-site upgrade or event-stream requests", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const agent = await h.startAgent();
  const auth = { authorization: `Bearer ${agent.token}` };
  const targets = [
    { name: "agent", url: `${agent.url}/api/meshes`, auth },
    { name: "CA", url: `${ca.url}/api/revocations?since=0&wait=0`, auth: {} },
  ];
  for (const t of targets) {
    // DNS rebinding: the page's name resolves to 127.0.0.1, the Host header keeps the name.
    for (const host of ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example:80"]) {
      const r = await curl(t.url, { ...t.auth, host });
      assert.equal(r.status, 403, `${t.name} Host ${host}: ${r.body}`);
      assert.equal(code(r.body), "foreign_host");
    }
    // Cross-site WebSocket and event stream: refused before any upgrade or stream.
    for (const [what, extra] of [["websocket", UPGRADE], ["event-stream", EVENT_STREAM]] as const) {
      const r = await curl(t.url, { ...t.auth, ...extra, origin: EVIL });
      assert.equal(r.status, 403, `${t.name} ${what}: ${r.body}`);
      assert.equal(code(r.body), "foreign_origin");
    }
    // Positive control: the same request from the API's own origin is served.
    const own = await curl(t.url, { ...t.auth, origin: new URL(t.url).origin });
    assert.equal(own.status, 200, `${t.name} own origin: ${own.body}`);
  }
});

Deno.test("agent and CA listen on loopback by default, and an agent on every interface still wants its token", async () => {
  for (const [entry, flag] of [["agent/main.ts", "listen"], ["ca/main.ts", "listen"]]) {
    const help = await run(Deno.execPath(), ["run", "-A", entry, "--help"], { allowFail: true });
    const line = (help.stdout + help.stderr).split("\n").find((l) =>
      l.trimStart().startsWith(`--${flag}=`)
    );
    assert.match(String(line), /127\.0\.0\.1:\d+/, `${entry} --${flag} default: ${line}`);
  }

  await using h = new Harness();
  const agent = await h.startAgent({ args: ["--listen=0.0.0.0:0"] });
  const outward = Deno.networkInterfaces().find((i) =>
    i.family === "IPv4" && !i.address.startsWith("127.")
  )?.address;
  const addresses = [`127.0.0.1:${agent.port}`, ...(outward ? [`${outward}:${agent.port}`] : [])];
  for (const addr of addresses) {
    const url = `http://${addr}/api/meshes`;
    const none = await curl(url, { host: `127.0.0.1:${agent.port}` });
    assert.equal(none.status, 401, `${addr} without token: ${none.body}`);
    // From another machine the Host is that machine's name for us: refused even with the token.
    const named = await curl(url, { authorization: `Bearer ${agent.token}` });
    const loopback = addr.startsWith("127.");
    assert.equal(named.status, loopback ? 200 : 403, `${addr} with token: ${named.body}`);
  }
  if (!outward) console.log("no non-loopback IPv4 address here: checked through 127.0.0.1 only");
});
