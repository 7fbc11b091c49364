/**
 * Invites through the agent, for the one case where that hands out no power
 * the caller lacks: the agent runs in the same process as its mesh's CA
 * (`ztm start`). There the agent's API token sits beside the CA's database
 * and token, owned by the same user, so whoever holds the token (or a
 * dashboard session minted with it) can already make invites with
 * `ztm invite`. An agent started any other way has no `InviteMaker`, and
 * `POST /api/meshes/{mesh}/invites` answers 404; a mesh whose CA is not the
 * maker's is refused the same way. Remote management never reaches this
 * route (it runs endpoint operations only, `remote.ts`).
 *
 * What an invite is and how the CA makes it: `ca/invites.ts`, `shared/invite.ts`.
 */
import { agentError, type InviteRequest, type MadeInvite } from "@ztm/shared/agent_api";
import type { ZtmError } from "@ztm/shared/errors";
import { parseCertificate } from "@ztm/shared/certs";
import { NAME_PATTERN } from "@ztm/shared/protocol";

export type { InviteRequest, MadeInvite };

/** The CA an agent runs beside: its certificate, and a way to make invites with it. */
export interface InviteMaker {
  caCertificatePem: string;
  /** Makes an invite; throws the CA's refusal as a `ZtmError`. */
  create(req: InviteRequest): Promise<MadeInvite>;
}

/** Checks an invite request body; throws `BadRequest` naming the bad field. */
export function checkInviteRequest(body: Record<string, unknown>): InviteRequest {
  for (const key of Object.keys(body)) {
    if (!["user", "expires", "uses"].includes(key)) {
      throw agentError(
        "bad_request",
        `Unknown field "${key.slice(0, 40)}": user, expires, uses`,
      );
    }
  }
  if (typeof body.user !== "string" || !NAME_PATTERN.test(body.user)) {
    throw agentError(
      "bad_user",
      "user is 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -",
    );
  }
  if (
    body.expires !== undefined &&
    (typeof body.expires !== "string" || !/^\d{1,7}[smhd]$/.test(body.expires))
  ) {
    throw agentError("bad_expiry", 'expires is a duration such as "15m", "1h", "7d"');
  }
  if (
    body.uses !== undefined &&
    (typeof body.uses !== "number" || !Number.isInteger(body.uses) || body.uses < 1 ||
      body.uses > 100)
  ) {
    throw agentError("bad_uses", "uses is a whole number from 1 to 100");
  }
  return {
    user: body.user,
    expires: body.expires as string | undefined,
    uses: body.uses as number | undefined,
  };
}

/**
 * Whether `maker` is the CA of a mesh whose CA certificate is `meshCaPem` (the
 * same DER bytes). False without a maker or for unreadable PEM; never throws.
 */
export function makesInvitesFor(maker: InviteMaker | undefined, meshCaPem: string): boolean {
  if (!maker) return false;
  try {
    const a = new Uint8Array(parseCertificate(maker.caCertificatePem).rawData);
    const b = new Uint8Array(parseCertificate(meshCaPem).rawData);
    return a.length === b.length && a.every((x, i) => x === b[i]);
  } catch {
    return false;
  }
}

/** The refusal for a mesh this agent cannot make invites for. */
export function noInvitesHere(mesh: string): ZtmError {
  return agentError(
    "invites_unavailable",
    `This agent does not run the CA of mesh "${mesh}": make invites with ztm invite on the CA's machine`,
  );
}
