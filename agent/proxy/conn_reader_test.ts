/**
 * Bounded reads of a proxy client's handshake over a real loopback socket:
 * exact counts and heads up to a delimiter, whatever the chunking; an early
 * end and an overlong head are `ProxyInputError`s; bytes past the head are
 * kept for the tunnel.
 */
import assert from "node:assert/strict";
import { ConnReader, ProxyInputError } from "./conn_reader.ts";
import { closeAll, deadline, readAll, tcpPair } from "./_fixture.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const CRLF2 = enc.encode("\r\n\r\n");

/** A reader (bounded by `max`) on one end of a loopback connection, and the client's end. */
async function reader(max: number) {
  const [client, server] = await tcpPair();
  return {
    client,
    reader: new ConnReader(server, max),
    server,
    [Symbol.dispose]: () => closeAll(client, server),
  };
}

Deno.test("peek does not consume; exactly takes counts across the client's writes", async () => {
  using r = await reader(64);
  await r.client.write(new Uint8Array([5, 1]));
  assert.equal(await deadline(r.reader.peek(), 5_000, "peek"), 5);
  assert.equal(await deadline(r.reader.peek(), 1_000, "peek"), 5, "a second peek sees it again");
  const later = r.reader.exactly(4);
  await r.client.write(new Uint8Array([0, 9]));
  assert.deepEqual(await deadline(later, 5_000, "four bytes"), new Uint8Array([5, 1, 0, 9]));
  await r.client.write(new Uint8Array([7, 8, 6]));
  assert.deepEqual(await deadline(r.reader.exactly(1), 5_000, "one byte"), new Uint8Array([7]));
  assert.deepEqual(await deadline(r.reader.exactly(2), 5_000, "two bytes"), new Uint8Array([8, 6]));
});

Deno.test("a head is read through its delimiter, also when the delimiter spans two reads", async () => {
  using r = await reader(256);
  await r.client.write(enc.encode("CONNECT web.mesh:443 HTTP/1.1\r\nHost: web\r\n\r"));
  await deadline(r.reader.peek(), 5_000, "peek"); // the first part is buffered before the rest is sent
  const head = r.reader.through(CRLF2);
  await r.client.write(enc.encode("\nHELLO"));
  await r.client.closeWrite();
  assert.equal(
    dec.decode(await deadline(head, 5_000, "the head")),
    "CONNECT web.mesh:443 HTTP/1.1\r\nHost: web\r\n\r\n",
  );
  // Bytes behind the head are the tunnel's: in `rest()`, or still on the socket, never lost.
  const rest = r.reader.rest();
  assert.equal(r.reader.rest().byteLength, 0, "rest() empties the buffer");
  const after = await deadline(readAll(r.server), 5_000, "the socket's end");
  assert.equal(dec.decode(rest) + dec.decode(after), "HELLO");
});

Deno.test("two heads sent at once are read one at a time", async () => {
  using r = await reader(256);
  await r.client.write(enc.encode("A\r\n\r\nB\r\n\r\n"));
  assert.equal(dec.decode(await deadline(r.reader.through(CRLF2), 5_000, "A")), "A\r\n\r\n");
  assert.equal(dec.decode(await deadline(r.reader.through(CRLF2), 5_000, "B")), "B\r\n\r\n");
});

Deno.test("a head as long as the bound is read; one byte more without a delimiter is refused", async () => {
  {
    using r = await reader(16);
    await r.client.write(enc.encode("0123456789AB\r\n\r\n"));
    assert.equal((await deadline(r.reader.through(CRLF2), 5_000, "16 bytes")).byteLength, 16);
  }
  using r = await reader(16);
  await r.client.write(enc.encode("0123456789ABCDEF" + "G\r\n\r\n"));
  await assert.rejects(
    deadline(r.reader.through(CRLF2), 5_000, "the refusal"),
    (e: Error) => e instanceof ProxyInputError && /longer than 16 bytes/.test(e.message),
  );
});

Deno.test("a request that ends early is a ProxyInputError; nothing at all peeks null", async () => {
  {
    using r = await reader(64);
    await r.client.write(new Uint8Array([5, 1]));
    await r.client.closeWrite();
    await assert.rejects(
      deadline(r.reader.exactly(3), 5_000, "the refusal"),
      (e: Error) => e instanceof ProxyInputError && e.message === "the request ended early",
    );
  }
  {
    using r = await reader(64);
    await r.client.write(enc.encode("GET / HTTP/1.1\r\n"));
    await r.client.closeWrite();
    await assert.rejects(
      deadline(r.reader.through(CRLF2), 5_000, "the refusal"),
      (e: Error) => e instanceof ProxyInputError && e.name === "ProxyInputError",
    );
  }
  using r = await reader(64);
  await r.client.closeWrite();
  assert.equal(await deadline(r.reader.peek(), 5_000, "peek"), null);
});
