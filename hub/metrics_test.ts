/**
 * The hub's counters as the data path and admission add to them: tunnels by a
 * bounded set of outcomes, relayed bytes, refusals by a fixed reason (a
 * revoked peer counted once, where admission asks).
 */
import assert from "node:assert/strict";
import {
  Forbidden,
  GatewayTimeout,
  NotFound,
  ServiceUnavailable,
  ZtmError,
} from "@ztm/shared/errors";
import { AdmissionRefused } from "./admit.ts";
import { HubMetrics } from "./metrics.ts";

function lines(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(name)).sort();
}

Deno.test("the hub's counters: tunnels by outcome, relayed bytes, refusals by reason", async () => {
  const m = new HubMetrics();
  m.tunnelOpened("ok");
  m.tunnelFailed(new ServiceUnavailable("endpoint_offline", 'Endpoint "x" is offline'));
  m.tunnelFailed(new NotFound("unknown_service", "No"));
  m.tunnelFailed(new GatewayTimeout("open_timeout", "Late"));
  m.tunnelFailed(new Forbidden("access_denied", "No"));
  m.tunnelFailed(new ZtmError(502, "target_unreachable", "Down"));
  m.tunnelFailed(new Error("socket hang up"));
  m.relayed(1000);
  m.relayed(0);
  m.relayed(24);
  m.peerRefused(new AdmissionRefused("certificate not verified: none presented"));
  m.peerRefused(new AdmissionRefused("certificate 0a is expired", "expired"));
  m.peerRefused(new AdmissionRefused("certificate 0a is revoked", "revoked"));
  m.refused("hub_full");
  m.revoked(2);
  m.revoked(0);
  const text = await m.metrics.text();
  assert.deepEqual(lines(text, "ztm_hub_tunnels_opened_total{"), [
    'ztm_hub_tunnels_opened_total{outcome="failed"} 1',
    'ztm_hub_tunnels_opened_total{outcome="offline"} 1',
    'ztm_hub_tunnels_opened_total{outcome="ok"} 1',
    'ztm_hub_tunnels_opened_total{outcome="refused"} 2',
    'ztm_hub_tunnels_opened_total{outcome="timeout"} 1',
    'ztm_hub_tunnels_opened_total{outcome="unknown_service"} 1',
  ]);
  assert.deepEqual(lines(text, "ztm_hub_relayed_bytes_total "), [
    "ztm_hub_relayed_bytes_total 1024",
  ]);
  assert.deepEqual(lines(text, "ztm_hub_admission_refusals_total{"), [
    'ztm_hub_admission_refusals_total{reason="certificate"} 1',
    'ztm_hub_admission_refusals_total{reason="expired"} 1',
    'ztm_hub_admission_refusals_total{reason="hub_full"} 1',
  ]);
  assert.deepEqual(lines(text, "ztm_hub_revocations_applied_total "), [
    "ztm_hub_revocations_applied_total 2",
  ]);
});
