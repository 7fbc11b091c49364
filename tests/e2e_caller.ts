/**
 * A hand-built end-to-end caller for tests that speak the hub protocol
 * directly: asks the hub for a pair, presents the ticket on the data port,
 * runs TLS to the provider (its peer name under the mesh CA) and the pair
 * protocol with the agent's own modules, and hands back the TLS connection
 * ready for frames (`exchangeConn`, `finish` in `data_fixture.ts`).
 */
import assert from "node:assert/strict";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { encodePreamble, type PeerAnswer, peerName } from "@ztm/shared/peer_protocol";
import { checkHello, Signer } from "../agent/peer/identity.ts";
import { PairLink, writeAll } from "../agent/peer/pair_link.ts";
import { withDeadline } from "./ca_helpers.ts";
import type { UserFiles } from "./harness.ts";
import type { HubClient } from "./hub_client.ts";
import { IO_TIMEOUT_MS } from "./net_helpers.ts";

/** What a hand-built caller needs. */
export interface E2eCall {
  client: HubClient;
  files: UserFiles;
  /** The caller's endpoint id (the one its control stream registered). */
  endpoint: string;
  /** The provider's endpoint id and user. */
  target: string;
  targetUser: string;
  service: string;
}

/** The hub's answer to a pair request, or its refusal (status and body). */
export async function askPair(
  call: E2eCall,
): Promise<{ status: number; text: string; sid?: string; ticket?: string }> {
  const reply = await call.client.request(
    "POST",
    HUB_PATHS.tunnel(call.target, "tcp", call.service),
  );
  if (reply.status !== 200) return { status: reply.status ?? 0, text: reply.text };
  return { status: 200, text: reply.text, ...JSON.parse(reply.text) };
}

/** Opens an end-to-end tunnel; throws with the hub's or provider's refusal. */
export async function openE2eTunnel(call: E2eCall, dataPort: number): Promise<Deno.TlsConn> {
  const granted = await askPair(call);
  assert.equal(granted.status, 200, granted.text);
  const signer = new Signer({
    caPem: call.files.ca,
    certPem: call.files.certificate,
    keyPem: call.files.privateKey,
    user: call.files.user,
    endpoint: call.endpoint,
  });
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: dataPort });
  tcp.setNoDelay(true);
  await writeAll(tcp, encodePreamble(granted.ticket!));
  const serverName = peerName(call.targetUser);
  const tls = await Deno.startTls(tcp, { hostname: serverName, caCerts: [call.files.ca] });
  try {
    const link = new PairLink(tls);
    await link.writeMessages(
      await signer.hello(signer.name, call.endpoint, serverName, call.target, granted.sid!),
      { type: "open", proto: "tcp", name: call.service },
    );
    const first = await withDeadline(link.readMessage<PeerAnswer>(), IO_TIMEOUT_MS, "the hello");
    if (first?.type === "error") throw new Error(`${first.code}: ${first.message}`);
    await checkHello(first, {
      caPem: call.files.ca,
      revoked: new Set(),
      role: "provider",
      user: call.targetUser,
      serverName,
      serverEndpoint: call.target,
      callerName: signer.name,
      callerEndpoint: call.endpoint,
      sid: granted.sid!,
    });
    const opened = await withDeadline(link.readMessage<PeerAnswer>(), IO_TIMEOUT_MS, "opened");
    if (opened?.type === "error") throw new Error(`${opened.code}: ${opened.message}`);
    assert.equal(opened?.type, "opened", JSON.stringify(opened));
    return tls;
  } catch (err) {
    try {
      tls.close();
    } catch { /* already closed */ }
    throw err;
  }
}
