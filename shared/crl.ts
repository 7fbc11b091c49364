/**
 * Checking a CA-signed CRL: the hub verifies what it fetches from the CA, and
 * agents verify what the hub hands them, so neither has to trust the channel.
 */
import { parseCertificate, x509 } from "./certs.ts";

/** A CRL whose signature checked out against the mesh CA. */
export interface VerifiedCrl {
  pem: string;
  /** cRLNumber, 0 if absent. */
  number: number;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Revoked serials, lower-case hex without leading zeros. */
  serials: Set<string>;
}

/** Normalises a serial for comparison: lower-case hex, no separators or leading zeros. */
export function normalizeSerial(serial: string): string {
  return serial.toLowerCase().replace(/[^0-9a-f]/g, "").replace(/^0+(?=.)/, "");
}

/** Parses `pem` and verifies it was signed by `caPem`. Throws naming what failed. */
export async function verifyCrl(pem: string, caPem: string): Promise<VerifiedCrl> {
  const ca = parseCertificate(caPem);
  let crl: x509.X509Crl;
  try {
    crl = new x509.X509Crl(pem);
  } catch (err) {
    throw new Error("CRL does not parse", { cause: err });
  }
  if (crl.issuer !== ca.subject) throw new Error("CRL was not issued by the mesh CA");
  const ok = await crl.verify({ publicKey: ca.publicKey }).catch(() => false);
  if (!ok) throw new Error("CRL signature does not verify against the mesh CA");
  const numberExt = crl.extensions.find((e) => e.type === "2.5.29.20");
  let number = 0;
  if (numberExt) {
    const der = new Uint8Array(numberExt.value);
    for (let i = 2; i < der.length; i++) number = number * 256 + der[i];
  }
  return {
    pem,
    number,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate,
    serials: new Set(crl.entries.map((e) => normalizeSerial(e.serialNumber))),
  };
}
