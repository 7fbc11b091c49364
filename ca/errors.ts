/**
 * Every code the CA raises, with its status: its answers to operators (the
 * API token), to hubs (enrollment, CRLs) and to devices (renewals, invites).
 * The codes of `shared/` (`SHARED_ERRORS`: routing, bodies) come on top.
 *
 * @example
 * ```ts
 * throw caError("unknown_certificate", `Unknown certificate "${name}"`);
 * ```
 *
 * @module
 */
import { type CodeCatalogue, type ErrorMaker, errorMaker } from "@ztm/shared/errors";

/** The CA's codes and their statuses. */
export const CA_ERRORS = {
  // Access (`server.ts`)
  token_required: 401,
  // Requests (`server.ts`, `devices.ts`, `invites.ts`)
  bad_json: 400,
  bad_query: 400,
  bad_serial: 400,
  // Certificates (`issue.ts`, `store.ts`)
  bad_name: 400,
  bad_endpoint: 400,
  bad_csr: 400,
  /** 400 when a new certificate's CSR names another user, 403 when a renewal's does. */
  csr_name_mismatch: [400, 403],
  key_mismatch: 403,
  name_taken: 409,
  not_live: 409,
  unknown_certificate: 404,
  // Renewals by devices (`devices.ts`)
  bad_renewal: 400,
  bad_proof: 403,
  stale_renewal: 403,
  // Invites (`invites.ts`)
  bad_enrollment: 400,
  bad_expiry: 400,
  bad_hubs: 400,
  bad_user: 400,
  bad_uses: 400,
  unknown_invite: 404,
  invite_refused: 403,
  invite_expired: 409,
  invite_revoked: 409,
  invite_used: 409,
  no_hubs: 409,
  too_many_attempts: 429,
} as const satisfies CodeCatalogue;

/** A code of the CA's own (see `SHARED_ERRORS` for the rest). */
export type CaErrorCode = keyof typeof CA_ERRORS;

/** Makes the errors of `CA_ERRORS`. */
export const caError: ErrorMaker<typeof CA_ERRORS> = errorMaker(CA_ERRORS);
