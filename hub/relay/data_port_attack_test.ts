/**
 * Attacks on the hub's data port by a member: a member's address holding
 * idle connections without tickets must not take the waiting room every
 * other member's data connections need.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { encodePreamble } from "@ztm/shared/peer_protocol";
import { type DataPort, GRACE_MS } from "./data_port.ts";
import { startDataPort, writeAll } from "./_fixture.ts";

async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array | undefined> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got)).catch(() => null);
    if (r === null) return undefined;
    got += r;
  }
  return out;
}

/** Closes `conns` (some may be closed already) and `port`. */
function closeAll(conns: Deno.Conn[], port: DataPort): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed */ }
  }
  port.close();
}

Deno.test("a member holding idle data connections from its address does not lock other members out", async () => {
  const { tickets, port, addr } = startDataPort({ total: 8, ticketMs: 5_000 });
  // Mallory is a member at 127.0.0.2, alice and bob at 127.0.0.1.
  port.memberOnline("127.0.0.2");
  port.memberOnline("127.0.0.1");
  const hoard: net.Socket[] = [];
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 8; i++) {
      const s = net.connect({ host: "127.0.0.1", port: addr.port, localAddress: "127.0.0.2" });
      s.on("error", () => {});
      hoard.push(s);
    }
    const end = Date.now() + 3_000;
    while (port.unticketed < 8 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.equal(port.unticketed, 8, "mallory's idle connections held");
    await new Promise((r) => setTimeout(r, GRACE_MS + 100));
    // Alice and bob pair through the data port while mallory holds on.
    const ta = tickets.mint({ sid: "p", side: "caller", endpoint: "A", serial: "1" }, {});
    const tb = tickets.mint({ sid: "p", side: "provider", endpoint: "B", serial: "2" }, {});
    for (const t of [ta, tb]) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
      conns.push(c);
      await writeAll(c, encodePreamble(t)).catch(() => {});
    }
    await writeAll(conns[0], new Uint8Array([7, 7, 7])).catch(() => {});
    assert.deepEqual(
      await readN(conns[1], 3),
      new Uint8Array([7, 7, 7]),
      "alice and bob not spliced",
    );
  } finally {
    for (const s of hoard) s.destroy();
    closeAll(conns, port);
  }
});

Deno.test("preamble tricks are refused without a byte and spend no ticket; a preamble in pieces or glued to TLS works", async () => {
  const { tickets, port, addr } = startDataPort({ ticketMs: 1_000, pairWaitMs: 2_000 });
  const conns: Deno.Conn[] = [];
  const dial = async (bytes: Uint8Array, pieces = 1) => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
    conns.push(c);
    const step = Math.ceil(bytes.byteLength / pieces);
    for (let at = 0; at < bytes.byteLength; at += step) {
      await writeAll(c, bytes.subarray(at, at + step)).catch(() => {});
      if (pieces > 1) await new Promise((r) => setTimeout(r, 5));
    }
    return c;
  };
  const text = (s: string) => new TextEncoder().encode(s);
  try {
    const sid = "p";
    const ta = tickets.mint({ sid, side: "caller", endpoint: "A", serial: "1" }, {});
    const tb = tickets.mint({ sid, side: "provider", endpoint: "B", serial: "2" }, {});
    const tricks = [
      `ZTM2 ${ta.toUpperCase()}\n`,
      `ZTM2 ${ta}\r\n`,
      ` ZTM2 ${ta}\n`,
      `ZTM1 ${ta}\n`,
      `ZTM2  ${ta.slice(1)}\n`,
      `ZTM2 ${ta.slice(0, 63)}\n\n`,
      `ztm2 ${ta}\n`,
    ];
    for (const t of tricks) {
      const c = await dial(text(t));
      assert.equal(await readN(c, 1), undefined, `answered ${JSON.stringify(t)}`);
    }
    assert.equal(tickets.size, 2, "a trick spent a ticket");
    // The real thing, in nine pieces, and the other side glued to its first bytes.
    const a = await dial(encodePreamble(ta), 9);
    const first = new Uint8Array([0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5]);
    const glued = new Uint8Array([...encodePreamble(tb), ...first]);
    await dial(glued);
    assert.deepEqual(await readN(a, first.byteLength), first, "bytes after the preamble lost");
  } finally {
    closeAll(conns, port);
  }
});

Deno.test("a member holding pairs with its own second endpoint is held to its share of splices; others still pair", async () => {
  const { tickets, port, addr } = startDataPort({ splicesPerCaller: 3 });
  const conns: Deno.Conn[] = [];
  const pair = async (sid: string, callerSerial: string) => {
    const legs = [];
    for (const side of ["caller", "provider"] as const) {
      const t = tickets.mint({
        sid,
        side,
        endpoint: side,
        serial: side === "caller" ? callerSerial : "p",
      }, {});
      const c = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
      conns.push(c);
      await writeAll(c, encodePreamble(t));
      legs.push(c);
    }
    await writeAll(legs[0], new Uint8Array([1])).catch(() => {});
    return (await readN(legs[1], 1)) !== undefined;
  };
  try {
    for (let i = 0; i < 3; i++) assert.ok(await pair(`m${i}`, "mallory"), `pair ${i}`);
    assert.equal(await pair("m3", "mallory"), false, "a fourth splice for mallory");
    assert.equal(port.splices, 3);
    assert.ok(await pair("a0", "alice"), "alice could not pair");
  } finally {
    closeAll(conns, port);
  }
});
