/**
 * Checks a request to join a mesh before anything is stored: the three files
 * (CA certificate, user certificate, private key) must fit together, and the
 * hub addresses must be dialable `host:port`s.
 *
 * It proves the files are consistent, not that the hub will admit them: a
 * revoked certificate passes here and is refused by the hub, whose refusal
 * the hub link reports in the mesh's status.
 *
 * @example
 * ```ts
 * const { config, user } = await checkJoinRequest("home", await readJsonObject(req, 65536));
 * store.addMesh(config);
 * ```
 */
import { agentError } from "@ztm/shared/agent_api";
import { formatHostPort, parseHostPort, UsageError } from "@ztm/shared/flags";
import {
  certificateRole,
  commonNameOf,
  fingerprintOf,
  importPrivateKeyPem,
  issuerAmong,
  parseCertificate,
  parseCertificates,
  type x509,
} from "@ztm/shared/certs";
import { NAME_PATTERN } from "@ztm/shared/protocol";
import { endpointIdOf, isEndpointName, newEndpointSeed } from "@ztm/shared/endpoint_id";
import type { MeshConfig } from "./runtime.ts";

/** Most hub addresses one mesh may list. */
export const MAX_BOOTSTRAPS = 16;

/** A checked join request: what to store, and the user the certificate names. */
export interface JoinRequest {
  config: MeshConfig;
  /** The certificate's subject CN: the user this agent acts as in the mesh. */
  user: string;
}

/** Options of {@link checkJoinRequest}. */
export interface JoinCheckOptions {
  /** Endpoint name when the body has no `agent.name`; defaults to {@link defaultEndpointName}. */
  endpointName?: string;
  /** The time certificates must be valid at; defaults to now. */
  now?: Date;
}

/**
 * Validates the join body `{ca, agent:{name?, certificate, privateKey}, bootstraps}`
 * for mesh `mesh` and returns the mesh config with a new endpoint id, derived
 * from the certificate's key and a new random seed (`@ztm/shared/endpoint_id`).
 * Throws `BadRequest` naming the first failed check (`bad_mesh_name`, `bad_ca`,
 * `bad_certificate`, `certificate_not_from_ca`, `certificate_expired`,
 * `certificate_not_yet_valid`, `wrong_role`, `bad_private_key`, `key_mismatch`,
 * `bad_endpoint_name`, `bad_bootstraps`, `bad_request`). Pure: safe to call concurrently.
 */
export async function checkJoinRequest(
  mesh: string,
  body: Record<string, unknown>,
  options: JoinCheckOptions = {},
): Promise<JoinRequest> {
  if (!NAME_PATTERN.test(mesh)) {
    throw agentError(
      "bad_mesh_name",
      `Bad mesh name "${mesh}": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -`,
    );
  }
  checkKeys(body, ["ca", "agent", "bootstraps"], "Join request");
  const agent = body.agent;
  if (typeof agent !== "object" || agent === null || Array.isArray(agent)) {
    throw agentError(
      "bad_request",
      "agent must be an object with certificate and privateKey",
    );
  }
  const fields = agent as Record<string, unknown>;
  checkKeys(fields, ["name", "certificate", "privateKey"], "agent");
  const endpointName = checkEndpointName(fields.name, options.endpointName);
  const bootstraps = checkBootstraps(body.bootstraps);
  const now = options.now ?? new Date();

  if (typeof body.ca !== "string") {
    throw agentError("bad_ca", "ca must be the mesh CA certificate as PEM text");
  }
  const ca = parseCa(body.ca, now);
  if (typeof fields.certificate !== "string") {
    throw agentError("bad_certificate", "agent.certificate must be a PEM certificate");
  }
  const certificate = parseCertificate(fields.certificate);
  const user = await checkUserCertificate(certificate, ca, now);
  if (typeof fields.privateKey !== "string") {
    throw agentError("bad_private_key", "agent.privateKey must be a PKCS#8 PEM private key");
  }
  await checkKeyMatches(fields.privateKey, certificate);
  const endpointSeed = newEndpointSeed();

  return {
    user,
    config: {
      name: mesh,
      ca: body.ca,
      certificate: fields.certificate,
      privateKey: fields.privateKey,
      bootstraps,
      endpointId: endpointIdOf(certificate.publicKey.rawData, endpointSeed),
      endpointSeed,
      endpointName,
    },
  };
}

/**
 * This machine's host name made into a valid endpoint name: characters outside
 * `A-Za-z0-9._-` become `-`, leading `.`/`-` are dropped, at most 64 characters;
 * `endpoint` if nothing is left or the host name cannot be read.
 */
export function defaultEndpointName(hostname?: string): string {
  let raw = hostname;
  if (raw === undefined) {
    try {
      raw = Deno.hostname();
    } catch {
      raw = ""; // no --allow-sys: fall back to the fixed name below
    }
  }
  const name = raw.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[.-]+/, "").slice(0, 64);
  return isEndpointName(name) ? name : "endpoint";
}

function checkKeys(obj: Record<string, unknown>, allowed: string[], what: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      throw agentError(
        "bad_request",
        `${what} has an unknown field "${key}"; allowed: ${allowed.join(", ")}`,
      );
    }
  }
}

function checkEndpointName(value: unknown, fallback: string | undefined): string {
  if (value === undefined || value === null || value === "") {
    return fallback ?? defaultEndpointName();
  }
  if (typeof value !== "string" || !isEndpointName(value)) {
    throw agentError(
      "bad_endpoint_name",
      `Bad endpoint name ${JSON.stringify(value)}: use 1 to 64 of A-Z a-z 0-9 . _ -, ` +
        "not starting with . or -, and not in the endpoint id form ep-<32 hex digits>",
    );
  }
  return value;
}

/**
 * Checks a list of hub addresses (`host:port`, 1 to {@link MAX_BOOTSTRAPS});
 * returns them normalized, without repeats. Throws `BadRequest` (`bad_bootstraps`).
 */
export function checkBootstraps(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_BOOTSTRAPS) {
    throw agentError(
      "bad_bootstraps",
      `bootstraps must be a list of 1 to ${MAX_BOOTSTRAPS} hub addresses "host:port"`,
    );
  }
  const out: string[] = [];
  for (const item of value) {
    if (typeof item !== "string" || item.startsWith(":")) {
      throw agentError(
        "bad_bootstraps",
        `Bad hub address ${JSON.stringify(item)}: write host:port`,
      );
    }
    let text: string;
    try {
      const addr = parseHostPort(item.trim());
      if (addr.port === 0) throw new UsageError(`Bad port in address "${item}": use 1 to 65535`);
      text = formatHostPort(addr);
      // The host pattern lets through names no URL can hold (256.1.1.1), which the link
      // would only find when it dials: a 500 from the join instead of this 400.
      if (!URL.canParse(`https://${text}/`)) throw new UsageError(`Bad host in address "${item}"`);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      throw agentError("bad_bootstraps", `Bad hub address: ${err.message}`, { cause: err });
    }
    if (!out.includes(text)) out.push(text);
  }
  return out;
}

/**
 * The mesh CA certificates of `pem`: one, or a bundle of several while a CA is
 * rotated (SECURITY.md); each must be a CA certificate valid at `now`.
 */
function parseCa(pem: string, now: Date): x509.X509Certificate[] {
  let cas: x509.X509Certificate[];
  try {
    cas = parseCertificates(pem);
  } catch (err) {
    throw agentError("bad_ca", "ca is not a PEM X.509 certificate", { cause: err });
  }
  for (const ca of cas) {
    if (certificateRole(ca) !== "ca") {
      throw agentError(
        "bad_ca",
        `ca "${ca.subject}" is not a CA certificate (no basicConstraints CA:true)`,
      );
    }
    if (now < ca.notBefore || now > ca.notAfter) {
      throw agentError(
        "bad_ca",
        `CA certificate "${ca.subject}" is valid only from ${ca.notBefore.toISOString()} ` +
          `to ${ca.notAfter.toISOString()}`,
      );
    }
  }
  return cas;
}

/** Checks chain, validity and role; returns the user name (CN). */
async function checkUserCertificate(
  cert: x509.X509Certificate,
  cas: x509.X509Certificate[],
  now: Date,
): Promise<string> {
  // A key or signature the verifier cannot even read is from none of them (issuerAmong).
  const signed = await issuerAmong(cert, cas) !== undefined;
  if (!signed) {
    const ca = cas[0];
    const fingerprint = (await fingerprintOf(ca)).slice(0, 16);
    throw agentError(
      "certificate_not_from_ca",
      `Certificate "${cert.subject}" was not issued by the CA "${ca.subject}" ` +
        `(SHA-256 fingerprint ${fingerprint}…, the CA certificate given) but by "${cert.issuer}"`,
    );
  }
  if (now > cert.notAfter) {
    throw agentError(
      "certificate_expired",
      `Certificate "${cert.subject}" expired at ${cert.notAfter.toISOString()}`,
    );
  }
  if (now < cert.notBefore) {
    throw agentError(
      "certificate_not_yet_valid",
      `Certificate "${cert.subject}" is valid only from ${cert.notBefore.toISOString()}`,
    );
  }
  const role = certificateRole(cert);
  if (role !== "client") {
    throw agentError(
      "wrong_role",
      `Certificate "${cert.subject}" has role "${role}"; an agent needs a user (clientAuth) certificate`,
    );
  }
  const user = commonNameOf(cert);
  if (!user || !NAME_PATTERN.test(user)) {
    throw agentError(
      "bad_certificate",
      `Certificate "${cert.subject}" names no valid user in its common name`,
    );
  }
  return user;
}

/** Compares the EC point of the private key with the certificate's public key. */
async function checkKeyMatches(pem: string, cert: x509.X509Certificate): Promise<void> {
  const privateKey = await importPrivateKeyPem(pem);
  const mine = await crypto.subtle.exportKey("jwk", privateKey);
  let theirs: JsonWebKey | undefined;
  try {
    theirs = await crypto.subtle.exportKey("jwk", await cert.publicKey.export());
  } catch {
    theirs = undefined; // not an EC key WebCrypto can read: it cannot match a P-256 private key
  }
  if (!theirs || theirs.crv !== mine.crv || theirs.x !== mine.x || theirs.y !== mine.y) {
    throw agentError(
      "key_mismatch",
      `Private key does not belong to certificate "${cert.subject}"`,
    );
  }
}
