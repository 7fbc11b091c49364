/**
 * Loopback ports for the benchmark: a free one to hand to a program that
 * cannot listen on port 0 and report back (sshd, iperf3, ssh -L, a port
 * mapping), and a wait until something accepts on one.
 *
 * Picking a free port and binding it later races with other programs; callers
 * that can retry on "address in use" do.
 */

/** The benchmark only ever talks to this address. */
export const LOOPBACK = "127.0.0.1";

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Waits until a TCP connect to 127.0.0.1:`port` succeeds (and closes it), or
 * throws after `timeoutMs`; `alive` may end the wait early by throwing.
 */
export async function waitForPort(
  port: number,
  timeoutMs = 10_000,
  alive: () => void = () => {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    alive();
    try {
      const conn = await Deno.connect({ hostname: LOOPBACK, port });
      conn.close();
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`Nothing accepts on ${LOOPBACK}:${port} after ${timeoutMs} ms: ${err}`);
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
