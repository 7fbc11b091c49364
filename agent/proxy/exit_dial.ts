/**
 * The exit's side of an exit tunnel, as one call for the provider: check the
 * caller (the user of the certificate the pair connection verified) and the
 * destination against the exit's list, then connect to the address that was
 * checked — never to the name again, so a DNS answer that changes between
 * check and dial cannot steer the connection. A refusal is thrown before any
 * packet leaves the exit.
 *
 * The provider's hook (see the report of issue 21): where it now connects to
 * a service's `host:port`, an `open` for the exit (`{name: "exit", to: {host,
 * port}}`) instead does `await dialExit(policy, {user, owner}, to)`.
 */
import { agentError } from "@ztm/shared/agent_api";
import { errText } from "@ztm/shared/log";
import { type ExitCaller, type ExitPolicy, type Resolver, systemResolver } from "./exit_policy.ts";

/** The longest a connection to an exit's destination may take. */
export const EXIT_CONNECT_MS = 10_000;

/** Where an exit tunnel asks to go. */
export interface ExitDestination {
  host: string;
  port: number;
}

/**
 * Checks `to` for `caller` and connects to the checked address. Throws
 * `Forbidden` (`exit_denied`) when the list refuses, `BadRequest` for a
 * malformed destination, or a 502 `ZtmError` (`target_unreachable`) when the
 * allowed destination does not answer.
 */
export async function dialExit(
  policy: ExitPolicy,
  caller: ExitCaller,
  to: ExitDestination,
  opts: { resolve?: Resolver; connectMs?: number } = {},
): Promise<Deno.TcpConn> {
  if (
    typeof to?.host !== "string" || to.host.length === 0 || to.host.length > 255 ||
    !Number.isInteger(to.port) || to.port < 1 || to.port > 65535
  ) {
    throw agentError(
      "bad_exit_destination",
      "An exit destination is a host and a port 1-65535",
    );
  }
  const address = await policy.check(caller, to.host, to.port, opts.resolve ?? systemResolver);
  const timeout = AbortSignal.timeout(opts.connectMs ?? EXIT_CONNECT_MS);
  try {
    const conn = await Deno.connect({ hostname: address, port: to.port, signal: timeout });
    conn.setNoDelay(true);
    return conn;
  } catch (err) {
    throw agentError(
      "target_unreachable",
      `Exit destination ${to.host.slice(0, 255)}:${to.port} (${address}) is unreachable: ${
        errText(err)
      }`,
    );
  }
}
