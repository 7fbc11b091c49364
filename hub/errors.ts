/**
 * Every code the hub raises, with its status: its answers to members on the
 * control port (admission limits, control streams, tunnels, management,
 * renewals) and to devices on the enrollment port. The codes of `shared/`
 * (`SHARED_ERRORS`: routing, bodies, control lines) come on top; a provider's
 * refusal of a tunnel is passed on with the provider's own status and code
 * (`refused` when it gave none).
 *
 * @example
 * ```ts
 * throw hubError("unknown_endpoint", `Unknown endpoint "${name}"`);
 * ```
 *
 * @module
 */
import { type CodeCatalogue, type ErrorMaker, errorMaker } from "@ztm/shared/errors";

/** The hub's codes and their statuses. */
export const HUB_ERRORS = {
  // Sessions and requests (`server.ts`)
  hub_full: 429,
  too_many_sessions: 429,
  protocol_mismatch: 400,
  not_registered: 403,
  no_crl: 503,
  bad_proto: 400,
  no_data_port: 503,
  // Control streams (`control.ts`)
  bad_endpoint_id: 400,
  session_has_endpoint: 409,
  too_many_control_streams: 429,
  no_hello: 400,
  bad_name: 400,
  endpoint_not_yours: 403,
  bad_version: 400,
  too_many_services: 429,
  // Endpoints (`registry.ts`)
  endpoint_taken: 403,
  too_many_endpoints: 429,
  unknown_endpoint: 404,
  ambiguous_endpoint: 409,
  // Tunnels (`tunnels.ts`) and management requests (`management.ts`)
  endpoint_offline: 503,
  unknown_service: 404,
  open_timeout: 504,
  revoked: 403,
  bad_json: 400,
  manage_timeout: 504,
  // Enrollment and renewals (`enrollment.ts`)
  slow_down: 429,
  ca_unreachable: 503,
  bad_enrollment: 400,
  too_large: 400,
  no_renewals: 403,
  bad_renewal: 400,
  not_your_certificate: 403,
} as const satisfies CodeCatalogue;

/** A code of the hub's own (see `SHARED_ERRORS` for the rest). */
export type HubErrorCode = keyof typeof HUB_ERRORS;

/** Makes the errors of `HUB_ERRORS`. */
export const hubError: ErrorMaker<typeof HUB_ERRORS> = errorMaker(HUB_ERRORS);
