/**
 * Test helpers of the data port tests (`data_port_test.ts`, `data_port_attack_test.ts`): a
 * data port on loopback with its own tickets, and a dial that presents a ticket's preamble.
 */
import { Logger } from "@ztm/shared/log";
import { encodePreamble } from "@ztm/shared/peer_protocol";
import { Tickets } from "../tickets.ts";
import type { HostPort } from "@ztm/shared/flags";
import { DataPort, type DataPortLimits } from "./data_port.ts";

/** Writes all of `bytes` to `conn`. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.byteLength) at += await conn.write(bytes.subarray(at));
}

/**
 * A data port on 127.0.0.1 (port 0) with its own tickets, a silent log and `limits`, started;
 * `dial` connects to it and sends the preamble of `ticket`. The caller closes the port and
 * the connections it dialled.
 */
export function startDataPort(limits: Partial<DataPortLimits> = {}): {
  tickets: Tickets;
  port: DataPort;
  addr: HostPort;
  dial(ticket: string): Promise<Deno.Conn>;
} {
  const tickets = new Tickets();
  const port = new DataPort({
    listen: { hostname: "127.0.0.1", port: 0 },
    tickets,
    log: new Logger("hub", { sink: () => {} }),
    limits,
  });
  const addr = port.start();
  const dial = async (ticket: string) => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
    await writeAll(c, encodePreamble(ticket));
    return c;
  };
  return { tickets, port, addr, dial };
}
