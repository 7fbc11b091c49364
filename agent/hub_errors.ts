/**
 * Why a hub could not be reached, in words a new user can act on: the
 * socket's and TLS stack's errors (`ECONNREFUSED`, `wrong version number`,
 * `UnknownIssuer`, …) mapped to what they almost always mean here.
 *
 * Used by the join's wait for the first hub session; the raw reason stays in
 * the mesh status (`lastError`) and the log.
 */
import { fingerprintOf, parseCertificate } from "@ztm/shared/certs";
import { parseHostPort } from "@ztm/shared/flags";
import { REFUSED_BY_HUB } from "./hub_link.ts";

/**
 * One sentence on why dialling `hub` failed with `why`; `ca` names the mesh CA
 * (see {@link describeCa}).
 */
export function explainHubFailure(hub: string, why: string, ca: string): string {
  const host = parseHostPort(hub).hostname;
  if (/ECONNREFUSED|connection refused/i.test(why)) {
    return `nothing listens on ${hub} (is the hub running, and is that its port? ` +
      `Hubs listen on 8888 by default)`;
  }
  if (/ENOTFOUND|EAI_AGAIN|getaddrinfo|failed to lookup|name or service not known/i.test(why)) {
    return `the host name "${host}" is not known here (mistyped, or not in DNS)`;
  }
  if (/altname|does not match|NotValidForName|ERR_TLS_CERT_ALTNAME/i.test(why)) {
    return `the hub's certificate does not name "${host}": dial a name it has, or restart ` +
      `the hub with --names=${host} (ztm hub) or --names=${host} (ztm start)`;
  }
  if (
    /wrong version number|packet length|unknown protocol|http request|InvalidContentType|corrupt message|record overflow|before secure TLS|ECONNRESET/i
      .test(why)
  ) {
    return `${hub} does not answer as a ztm hub (no TLS there: the CA's port, or another ` +
      `program?)`;
  }
  if (
    /UnknownIssuer|unable to verify|local issuer|self.signed|certificate signature|BadSignature|UNABLE_TO_GET_ISSUER/i
      .test(why)
  ) {
    return `the hub's certificate is from another CA, not this mesh's ${ca}`;
  }
  if (why === REFUSED_BY_HUB) {
    return "the hub refused this certificate: revoked, expired, or from another CA than the hub's";
  }
  if (/no answer from the hub/i.test(why)) {
    return `no answer from ${hub} (${why.replace(/^no answer from the hub /, "")}): a firewall ` +
      `dropping packets, or a wrong address`;
  }
  return why;
}

/** `CA "CN=ztm mesh CA 3f9a2c" (SHA-256 fingerprint 3f9a2c…)`, for messages. */
export async function describeCa(caPem: string): Promise<string> {
  try {
    const ca = parseCertificate(caPem);
    return `CA "${ca.subject}" (SHA-256 fingerprint ${(await fingerprintOf(ca)).slice(0, 16)}…)`;
  } catch {
    return "CA";
  }
}
