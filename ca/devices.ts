/**
 * A certificate per device: the CA's routes for certificates issued to one
 * endpoint of a user, beside the walkthrough's one-per-user routes.
 *
 * Every certificate still names its user in the subject CN (access rules stay
 * per user); the endpoint lives in the CA's records, so one device can be
 * revoked without touching the user's others. Renewals supersede a device's
 * certificate (same user, endpoint and key) and are proven by a signature of
 * the current key over the request, so the hub that carries them gains
 * nothing from them.
 */
import { caError } from "./errors.ts";
import { parseCertificate } from "@ztm/shared/certs";
import { json, readText, type Route, text } from "@ztm/shared/http";
import { renewalMessage } from "@ztm/shared/renewal";
import { checkEndpointName, checkName, type Issuer } from "./issue.ts";
import type { Revoker } from "./revoke.ts";
import type { CaStore, CertificateRecord } from "./store.ts";

const PEM = "application/x-pem-file";
const MAX_BODY_BYTES = 16 * 1024;
/** How far a renewal's signed time may be from the CA's clock. */
export const RENEWAL_SKEW_MS = 5 * 60_000;

/** A certificate as the CA lists it. */
export function certificateSummary(r: CertificateRecord) {
  return {
    name: r.name,
    role: r.role,
    endpoint: r.endpoint ?? null,
    serial: r.serial,
    fingerprint: r.fingerprint,
    notBefore: r.notBefore,
    notAfter: r.notAfter,
    issuedAt: r.issuedAt,
    revoked: r.revokedAt !== null,
    revokedAt: r.revokedAt,
    superseded: (r.supersededAt ?? null) !== null,
    supersededAt: r.supersededAt ?? null,
    renewedFrom: r.renewedFrom ?? null,
  };
}

/** What the device routes need. */
export interface DeviceRouteOptions {
  store: CaStore;
  issuer: Issuer;
  revoker: Revoker;
}

function checkSerial(serial: string): void {
  if (!/^[0-9a-fA-F]{1,64}$/.test(serial)) {
    throw caError("bad_serial", "The serial is the certificate's hex serial number");
  }
}

/**
 * Checks a renewal request `{serial, csr, time, signature}` (signature: base64 ECDSA P-256
 * over `renewalMessage` with the key of certificate `serial`) and renews it. Throws
 * `Forbidden` for a bad proof, `NotFound` for an unknown or dead certificate.
 */
export async function renew(
  opts: DeviceRouteOptions,
  body: Record<string, unknown>,
): Promise<CertificateRecord> {
  const { serial, csr, time, signature } = body;
  if (
    typeof serial !== "string" || typeof csr !== "string" || typeof time !== "string" ||
    typeof signature !== "string" || csr.length > 8192 || signature.length > 200 ||
    time.length > 40
  ) {
    throw caError("bad_renewal", "A renewal is {serial, csr, time, signature}");
  }
  checkSerial(serial);
  const previous = opts.store.bySerial(serial);
  if (
    !previous || previous.role !== "user" || previous.revokedAt !== null ||
    Date.parse(previous.notAfter) <= Date.now()
  ) {
    throw caError("unknown_certificate", `No live user certificate with serial ${serial}`);
  }
  const at = Date.parse(time);
  if (!Number.isFinite(at) || Math.abs(at - Date.now()) > RENEWAL_SKEW_MS) {
    throw caError("stale_renewal", "The renewal's signed time is not within 5 minutes");
  }
  let valid = false;
  try {
    const key = await parseCertificate(previous.certificate).publicKey.export(
      { name: "ECDSA", namedCurve: "P-256" },
      ["verify"],
    );
    valid = await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      Uint8Array.fromBase64(signature) as Uint8Array<ArrayBuffer>,
      renewalMessage(previous.serial, time, csr),
    );
  } catch {
    valid = false;
  }
  if (!valid) {
    throw caError("bad_proof", "The renewal is not signed by that certificate's key");
  }
  return await opts.issuer.renewUser(previous, csr);
}

/** The CA's routes for device certificates and renewals. */
export function deviceRoutes(opts: DeviceRouteOptions): Route[] {
  const { store, issuer, revoker } = opts;
  return [
    {
      method: "GET",
      pattern: "/api/certificates/:name/endpoints",
      handler: (_req, p) => {
        checkName(p.name);
        const key = p.name.toLowerCase();
        return json(
          store.list().filter((r) => r.role === "user" && r.name.toLowerCase() === key)
            .map(certificateSummary),
        );
      },
    },
    {
      method: "POST",
      pattern: "/api/certificates/:name/endpoints/:endpoint",
      handler: async (req, p) => {
        const body = (await readText(req, MAX_BODY_BYTES)).trim();
        if (body === "") {
          const { privateKeyPem } = await issuer.issueDevice(p.name, p.endpoint);
          return text(privateKeyPem, 201, PEM);
        }
        if (!body.includes("CERTIFICATE REQUEST")) {
          throw caError(
            "bad_csr",
            "Body must be empty (new key) or a PEM certificate signing request",
          );
        }
        const record = await issuer.signDeviceCsr(p.name, p.endpoint, body);
        return text(record.certificate, 201, PEM);
      },
    },
    {
      method: "GET",
      pattern: "/api/certificates/:name/endpoints/:endpoint",
      handler: (_req, p) => {
        checkName(p.name);
        checkEndpointName(p.endpoint);
        const record = store.liveUserCertificate(p.name, p.endpoint);
        if (!record) {
          throw caError(
            "unknown_certificate",
            `No live certificate of "${p.name}" for endpoint "${p.endpoint}"`,
          );
        }
        return text(record.certificate, 200, PEM);
      },
    },
    {
      method: "DELETE",
      pattern: "/api/certificates/:name/endpoints/:endpoint",
      handler: (_req, p) => {
        checkName(p.name);
        checkEndpointName(p.endpoint);
        return json({ revoked: revoker.revokeDevice(p.name, p.endpoint).map(certificateSummary) });
      },
    },
    {
      method: "DELETE",
      pattern: "/api/serials/:serial",
      handler: (_req, p) => {
        checkSerial(p.serial);
        return json({ revoked: revoker.revokeSerial(p.serial).map(certificateSummary) });
      },
    },
    {
      method: "POST",
      pattern: "/api/renewals",
      handler: async (req) => {
        const raw = await readText(req, MAX_BODY_BYTES);
        let body: unknown;
        try {
          body = JSON.parse(raw);
        } catch {
          body = undefined;
        }
        if (!body || typeof body !== "object" || Array.isArray(body)) {
          throw caError("bad_renewal", "A renewal is {serial, csr, time, signature}");
        }
        const record = await renew(opts, body as Record<string, unknown>);
        return json({ certificate: record.certificate, ...certificateSummary(record) }, 201);
      },
    },
  ];
}
