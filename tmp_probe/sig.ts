const mode = Deno.args[0];
const s = Deno.serve({ port: 0, onListen() {} }, (req, info) => {
  if (mode === "get") { const x = req.signal; }
  if (mode === "listen") req.signal.addEventListener("abort", () => {});
  if (mode === "info") console.error(Object.keys(info), typeof (info as any).completed);
  return new Response("ok");
});
const r = await fetch(`http://127.0.0.1:${s.addr.port}/`); await r.text();
await s.shutdown();
