/**
 * The CA's REST API: a literal route table over `Issuer` and `Revoker`.
 *
 * The first four routes are those of the original ZTM walkthrough, so its curl
 * commands work verbatim. The API has no accounts — whoever reaches it can mint
 * certificates — so `guard` refuses non-loopback `Host` headers and foreign
 * `Origin`s, and the hub-certificate route (and every route when listening
 * beyond loopback) needs the CA token.
 */
import { caExpiry } from "@ztm/shared/ca_expiry";
import { fingerprintOf, parseCertificate } from "@ztm/shared/certs";
import { caError } from "./errors.ts";
import {
  type App,
  checkHostAndOrigin,
  createRouter,
  hasBearerToken,
  json,
  readText,
  type Route,
  text,
} from "@ztm/shared/http";
import { certificateSummary, deviceRoutes } from "./devices.ts";
import { checkName, type Issuer } from "./issue.ts";
import { inviteRoutes, type InviteService } from "./invites.ts";
import type { Revoker } from "./revoke.ts";
import type { CaStore, CertificateRecord } from "./store.ts";

/** Largest request body the CA reads (a CSR is under 2 KiB). */
export const MAX_BODY_BYTES = 16 * 1024;
/** Longest long poll on the revocation feed, seconds. */
export const MAX_WAIT_SECONDS = 60;

const PEM = "application/x-pem-file";

/** What the CA app needs. */
export interface CaAppOptions {
  store: CaStore;
  issuer: Issuer;
  revoker: Revoker;
  caCertificatePem: string;
  token: string;
  /** True when listening on loopback only: then `Host` must be a loopback name. */
  loopbackOnly: boolean;
  /** Invites and enrollment (`invites.ts`). */
  invites: InviteService;
}

function summary(r: CertificateRecord) {
  return certificateSummary(r);
}

function requireToken(req: Request, token: string): void {
  if (!hasBearerToken(req, token)) {
    throw caError(
      "token_required",
      "This route needs the CA token (Authorization: Bearer …)",
    );
  }
}

function intParam(url: URL, name: string, fallback: number): number {
  const v = url.searchParams.get(name);
  if (v === null || v === "") return fallback;
  if (!/^\d{1,15}$/.test(v)) {
    throw caError("bad_query", `Query "${name}" must be a whole number`);
  }
  return Number(v);
}

/** Builds the CA app. */
export function createCaApp(opts: CaAppOptions): App {
  const { store, issuer, revoker } = opts;
  const caCertificate = parseCertificate(opts.caCertificatePem);
  const routes: Route[] = [
    {
      // The CA's own certificate: whom it is, and when it ends (a warning a year ahead).
      method: "GET",
      pattern: "/api/status",
      handler: async () =>
        json({
          ca: {
            subject: caCertificate.subject,
            fingerprint: await fingerprintOf(caCertificate),
            ...caExpiry(caCertificate.notAfter, Date.now()),
          },
        }),
    },
    {
      method: "GET",
      pattern: "/api/certificates/ca",
      handler: () => text(opts.caCertificatePem, 200, PEM),
    },
    {
      method: "GET",
      pattern: "/api/certificates",
      handler: () => json(store.list().map(summary)),
    },
    {
      method: "POST",
      pattern: "/api/certificates/:name",
      handler: async (req, p) => {
        const body = (await readText(req, MAX_BODY_BYTES)).trim();
        if (body === "") {
          const { privateKeyPem } = await issuer.issueUser(p.name);
          return text(privateKeyPem, 201, PEM);
        }
        if (!body.includes("CERTIFICATE REQUEST")) {
          throw caError(
            "bad_csr",
            "Body must be empty (new key) or a PEM certificate signing request",
          );
        }
        const record = await issuer.signUserCsr(p.name, body);
        return text(record.certificate, 201, PEM);
      },
    },
    {
      method: "GET",
      pattern: "/api/certificates/:name",
      handler: (_req, p) => {
        checkName(p.name);
        const record = store.liveUserCertificate(p.name);
        if (!record) throw caError("unknown_certificate", `Unknown certificate "${p.name}"`);
        return text(record.certificate, 200, PEM);
      },
    },
    {
      method: "DELETE",
      pattern: "/api/certificates/:name",
      handler: (_req, p) => {
        checkName(p.name);
        // Every certificate of the user: the walkthrough's, and each device's.
        const all = revoker.revokeUserEverywhere(p.name).map(summary);
        return json({ revoked: all[0], all });
      },
    },
    ...deviceRoutes({ store, issuer, revoker }),
    ...inviteRoutes(opts.invites, (req) => requireToken(req, opts.token)),
    {
      method: "GET",
      pattern: "/api/crl",
      handler: async () => text(await revoker.crlPem(), 200, PEM),
    },
    {
      method: "GET",
      pattern: "/api/revocations",
      handler: async (req) => {
        const url = new URL(req.url);
        const since = intParam(url, "since", 0);
        const wait = Math.min(intParam(url, "wait", 0), MAX_WAIT_SECONDS);
        // No req.signal: in Deno 2.9 touching it prints a non-JSON warning into the log. A
        // poll whose client hung up just ends at its wait (at most MAX_WAIT_SECONDS) or the
        // next revocation; `close()` wakes every poll.
        const revocations = await revoker.revocationsSince(since, wait * 1000);
        return json({ seq: revoker.lastSeq(), revocations });
      },
    },
    {
      method: "POST",
      pattern: "/api/hub-certificates",
      handler: async (req) => {
        requireToken(req, opts.token);
        const body = await readText(req, MAX_BODY_BYTES);
        const record = await issuer.signHubCsr(body);
        return text(record.certificate, 201, PEM);
      },
    },
    {
      method: "DELETE",
      pattern: "/api/hub-certificates/:serial",
      handler: (req, p) => {
        requireToken(req, opts.token);
        if (!/^[0-9a-fA-F]{1,64}$/.test(p.serial)) {
          throw caError("bad_serial", "The serial is the certificate's hex serial number");
        }
        return json({ revoked: summary(revoker.revokeHub(p.serial)) });
      },
    },
  ];
  const router = createRouter(routes);
  const publicWhenRemote = new Set(["/api/certificates/ca", "/api/crl"]);
  return async (req) => {
    checkHostAndOrigin(req, opts.loopbackOnly);
    if (!opts.loopbackOnly && !publicWhenRemote.has(new URL(req.url).pathname)) {
      requireToken(req, opts.token);
    }
    return await router(req);
  };
}
