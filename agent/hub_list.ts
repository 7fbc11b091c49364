/**
 * Checks one entry of a hub list a hub sent (`hubs` message,
 * `shared/protocol.ts`) before any address of it is dialled: the certificate
 * must be a hub certificate of this mesh (signed by the mesh CA, the hub
 * role, within its validity, not on the newest CRL this agent verified), and
 * each address's host must be one of the certificate's names. Whatever a hub
 * sends, the agent dials only hubs the CA vouches for, on names the CA put in
 * their certificates.
 */
import {
  altNamesOf,
  certificateRole,
  issuerAmong,
  parseCertificate,
  parseCertificates,
  publicKeyHex,
  serialOf,
} from "@ztm/shared/certs";
import { errText } from "@ztm/shared/log";
import { parseHostPort } from "@ztm/shared/flags";
import type { HubListEntry } from "@ztm/shared/protocol";

/** A hub list entry that passed `checkHubEntry`. */
export interface CheckedHub {
  /** The addresses whose host the certificate names, as `host:port`. */
  addresses: string[];
  serial: string;
  /** The certificate's key (SPKI DER, hex): one hub, whatever address or renewal. */
  key: string;
  /** The certificate's notAfter, epoch ms. */
  notAfter: number;
}

/**
 * Checks `entry` against the mesh CA (`caPem`) and the revoked serials. Throws an `Error`
 * saying in words why the entry is not a hub of this mesh.
 */
export async function checkHubEntry(
  entry: HubListEntry,
  caPem: string,
  revoked: Set<string>,
  now = Date.now(),
): Promise<CheckedHub> {
  let cert;
  try {
    cert = parseCertificate(entry.certificate);
  } catch (err) {
    throw new Error(`its certificate does not parse (${errText(err).slice(0, 120)})`);
  }
  // Any certificate of the mesh's CA bundle (one CA, or two while it is rotated).
  const signed = await issuerAmong(cert, parseCertificates(caPem)) !== undefined;
  if (!signed) throw new Error("its certificate is not signed by this mesh's CA");
  if (certificateRole(cert) !== "server") {
    throw new Error("its certificate is not a hub certificate");
  }
  if (now < cert.notBefore.getTime() || now >= cert.notAfter.getTime()) {
    throw new Error("its certificate is not valid now");
  }
  const serial = serialOf(cert);
  if (revoked.has(serial)) throw new Error(`its certificate (serial ${serial}) is revoked`);
  const names = new Set(altNamesOf(cert).map((n) => n.toLowerCase()));
  const addresses: string[] = [];
  const refused: string[] = [];
  for (const address of entry.addresses) {
    let host: string;
    try {
      host = parseHostPort(address).hostname.toLowerCase();
    } catch {
      refused.push(address);
      continue;
    }
    if (names.has(host)) addresses.push(address);
    else refused.push(address);
  }
  if (!addresses.length) {
    throw new Error(
      `its certificate names none of its addresses (${refused.join(", ").slice(0, 200)})`,
    );
  }
  return { addresses, serial, key: publicKeyHex(cert), notAfter: cert.notAfter.getTime() };
}
