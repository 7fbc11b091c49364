/**
 * The data port on loopback sockets: two ticketed connections are spliced
 * byte for byte, a bad, reused or foreign ticket is closed without a byte,
 * a leg whose partner never comes is closed, and a closed session or a
 * revoked serial cuts its splices.
 */
import assert from "node:assert/strict";
import { startDataPort, writeAll } from "./_fixture.ts";

async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error(`ended after ${got} of ${n} bytes`);
    got += r;
  }
  return out;
}

/** Resolves with the bytes read until the peer closes (or errors). */
async function readToEnd(conn: Deno.Conn): Promise<number> {
  const buf = new Uint8Array(4096);
  let n = 0;
  try {
    while (true) {
      const r = await conn.read(buf);
      if (r === null) return n;
      n += r;
    }
  } catch {
    return n;
  }
}

Deno.test("two ticketed legs of one pair are spliced byte for byte; a used ticket is refused", async () => {
  const { tickets, port, dial } = startDataPort();
  const a = {}, b = {};
  const ta = tickets.mint({ sid: "p1", side: "caller", endpoint: "A", serial: "1" }, a);
  const tb = tickets.mint({ sid: "p1", side: "provider", endpoint: "B", serial: "2" }, b);
  const ca = await dial(ta);
  const cb = await dial(tb);
  try {
    const data = crypto.getRandomValues(new Uint8Array(60_000));
    await writeAll(ca, data);
    assert.deepEqual(await readN(cb, data.byteLength), data);
    await writeAll(cb, data.subarray(0, 100));
    assert.deepEqual(await readN(ca, 100), data.subarray(0, 100));
    assert.equal(port.splices, 1);
    const again = await dial(ta);
    assert.equal(await readToEnd(again), 0);
    again.close();
    assert.equal(port.refused, 1);
  } finally {
    ca.close();
    cb.close();
    port.close();
  }
});

Deno.test("a forged ticket and garbage are closed without a byte, and a lone leg at its deadline", async () => {
  const { tickets, port, addr, dial } = startDataPort({ pairWaitMs: 200, ticketMs: 300 });
  try {
    const forged = await dial("ab".repeat(32));
    assert.equal(await readToEnd(forged), 0);
    forged.close();
    const garbage = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
    await writeAll(garbage, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n".repeat(5)));
    assert.equal(await readToEnd(garbage), 0);
    garbage.close();
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
    assert.equal(await readToEnd(silent), 0, "a silent connection is closed at the deadline");
    silent.close();
    const lone = await dial(
      tickets.mint({ sid: "p", side: "caller", endpoint: "A", serial: "1" }, {}),
    );
    assert.equal(await readToEnd(lone), 0, "a leg whose partner never comes is closed");
    lone.close();
    assert.equal(port.unticketed, 0);
  } finally {
    port.close();
  }
});

Deno.test("a closed session and a revoked serial cut their splices", async () => {
  const { tickets, port, dial } = startDataPort();
  try {
    for (const cut of ["session", "serial"] as const) {
      const a = {}, b = {};
      const sid = `p-${cut}`;
      const ca = await dial(tickets.mint({ sid, side: "caller", endpoint: "A", serial: "s1" }, a));
      const cb = await dial(
        tickets.mint({ sid, side: "provider", endpoint: "B", serial: "s2" }, b),
      );
      await writeAll(ca, new Uint8Array([1, 2, 3]));
      assert.deepEqual(await readN(cb, 3), new Uint8Array([1, 2, 3]));
      if (cut === "session") port.sessionClosed(a);
      else port.revoke(new Set(["s2"]));
      assert.equal(await readToEnd(cb), 0);
      assert.equal(await readToEnd(ca), 0);
      ca.close();
      cb.close();
    }
    assert.equal(port.splices, 0);
  } finally {
    port.close();
  }
});
