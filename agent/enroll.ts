/**
 * Joining with an invite: the agent makes the device's key here (it never
 * leaves this process but into the agent's own database), asks the hub's
 * enrollment port for the CA certificate and keeps it only if its SHA-256 is
 * the fingerprint the invite pins, then sends a CSR with the invite's proof
 * (HMAC over the invite id, endpoint name and CSR, keyed by the invite's
 * secret: the hub carries it and can use it for nothing else) over TLS
 * verified against that CA. The certificate that comes back must chain to
 * the pinned CA, name the invite's user and carry this key; the result is an
 * ordinary join body (`join.ts` checks it again).
 */
import { agentError } from "@ztm/shared/agent_api";
import https from "node:https";
import {
  certificateRole,
  commonNameOf,
  exportPrivateKeyPem,
  fingerprintOf,
  generateKeyPair,
  parseCertificate,
  x509,
} from "@ztm/shared/certs";
import { isEndpointName } from "@ztm/shared/endpoint_id";
import { concatBytes } from "@ztm/shared/concat_bytes";
import { errorFromResponse } from "@ztm/shared/errors";
import { parseHostPort } from "@ztm/shared/flags";
import { decodeInvite, enrollmentProof, inviteProofKey } from "@ztm/shared/invite";
import { errText, type Logger } from "@ztm/shared/log";
import { NAME_PATTERN } from "@ztm/shared/protocol";
import { defaultEndpointName } from "./join.ts";

const TIMEOUT_MS = 15_000;
const MAX_ANSWER_BYTES = 64 * 1024;

/** Where an enrollment port is, as a URL base. */
function baseOf(address: string): { url: string; hostname: string; port: number } {
  const { hostname, port } = parseHostPort(address);
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return { url: `https://${host}:${port}`, hostname, port };
}

/**
 * The CA certificate the enrollment port hands out. Read without checking the port's
 * certificate (the device has no CA yet); the caller keeps it only if it matches the pin.
 */
function fetchCaUnverified(address: string): Promise<string> {
  const { hostname, port } = baseOf(address);
  return new Promise((resolve, reject) => {
    const req = https.request({
      hostname,
      port,
      path: "/ca",
      method: "GET",
      rejectUnauthorized: false,
      timeout: TIMEOUT_MS,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      res.on("data", (c: Uint8Array) => {
        size += c.byteLength;
        if (size > MAX_ANSWER_BYTES) {
          req.destroy(new Error("the answer is too large"));
          return;
        }
        chunks.push(c);
      });
      res.on("end", () => {
        if (res.statusCode !== 200) {
          reject(new Error(`${address} answered ${res.statusCode} for the CA certificate`));
          return;
        }
        resolve(new TextDecoder().decode(concatBytes(chunks)));
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from ${address}`)));
    req.on("error", reject);
    req.end();
  });
}

/** Options of {@link enrollWithInvite}. */
export interface EnrollOptions {
  /** Endpoint name when the body gives none; default: the host name. */
  endpointName?: string;
  log: Logger;
}

/**
 * Turns `{invite, agent?: {name?}, bootstraps?}` into a join body
 * `{ca, agent: {name, certificate, privateKey}, bootstraps}` by enrolling through the
 * invite's hubs. Throws `BadRequest` for a bad invite or a CA that does not match its pin,
 * the CA's own refusal (403 `invite_refused`, 409 `invite_used`…), or
 * `ServiceUnavailable` when no enrollment port answers.
 */
export async function enrollWithInvite(
  body: Record<string, unknown>,
  opts: EnrollOptions,
): Promise<Record<string, unknown>> {
  for (const key of Object.keys(body)) {
    if (!["invite", "agent", "bootstraps"].includes(key)) {
      throw agentError(
        "bad_request",
        `A join with an invite takes invite, agent.name and bootstraps, not "${key.slice(0, 40)}"`,
      );
    }
  }
  if (typeof body.invite !== "string") {
    throw agentError("bad_invite", "invite must be the invite string");
  }
  const invite = decodeInvite(body.invite);
  if (!NAME_PATTERN.test(invite.user)) throw agentError("bad_invite", "Bad user in invite");
  const agent = (body.agent ?? {}) as Record<string, unknown>;
  if (typeof agent !== "object" || Array.isArray(agent)) {
    throw agentError("bad_request", "agent must be an object");
  }
  for (const key of Object.keys(agent)) {
    if (key !== "name") {
      throw agentError(
        "bad_request",
        "With an invite the agent makes its own key and certificate",
      );
    }
  }
  const name = agent.name === undefined ? (opts.endpointName ?? defaultEndpointName()) : agent.name;
  if (typeof name !== "string" || !isEndpointName(name)) {
    throw agentError("bad_endpoint_name", `Bad endpoint name "${String(name).slice(0, 80)}"`);
  }

  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${invite.user}`,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  });
  const csrPem = csr.toString("pem");
  const proof = await enrollmentProof(await inviteProofKey(invite.secret), invite.id, name, csrPem);
  const request = JSON.stringify({
    invite: invite.id,
    endpoint: name,
    csr: csrPem,
    proof: proof.toBase64({ alphabet: "base64url", omitPadding: true }),
  });

  const failures: string[] = [];
  for (const address of invite.enroll) {
    let caPem: string;
    try {
      caPem = await fetchCaUnverified(address);
    } catch (err) {
      failures.push(`${address}: ${errText(err)}`);
      continue;
    }
    let ca: x509.X509Certificate;
    try {
      ca = parseCertificate(caPem);
    } catch {
      failures.push(`${address}: it did not send a certificate`);
      continue;
    }
    if ((await fingerprintOf(ca)) !== invite.caFingerprint || certificateRole(ca) !== "ca") {
      // Another CA, or a man in the middle: this address is not the mesh's hub.
      opts.log.warn("enrollment: the hub's CA does not match the invite", { peer: address });
      throw agentError(
        "ca_mismatch",
        `The hub at ${address} serves a CA certificate whose fingerprint is not the one in the ` +
          "invite: nothing was sent to it",
      );
    }
    const client = Deno.createHttpClient({ caCerts: [caPem] });
    let res: Response;
    try {
      res = await fetch(`${baseOf(address).url}/enroll`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: request,
        client,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      client.close();
      failures.push(`${address}: ${errText(err)}`);
      continue;
    }
    const text = await res.text();
    client.close();
    if (!res.ok) {
      const err = errorFromResponse(res.status, text);
      opts.log.warn("enrollment refused", { peer: address, status: res.status, code: err.code });
      throw err;
    }
    const answer = JSON.parse(text) as { certificate?: unknown };
    if (typeof answer.certificate !== "string") {
      throw agentError("bad_answer", "The CA's answer carries no certificate");
    }
    await checkIssued(answer.certificate, ca, keys.publicKey, invite.user);
    opts.log.info("enrolled with an invite", { user: invite.user, endpoint: name, peer: address });
    return {
      ca: caPem,
      agent: {
        name,
        certificate: answer.certificate,
        privateKey: await exportPrivateKeyPem(keys.privateKey),
      },
      bootstraps: body.bootstraps ?? invite.hubs,
    };
  }
  throw agentError(
    "hub_unreachable",
    `No enrollment port of the invite answered: ${failures.join("; ")}`,
  );
}

async function checkIssued(
  pem: string,
  ca: x509.X509Certificate,
  publicKey: CryptoKey,
  user: string,
): Promise<void> {
  const cert = parseCertificate(pem);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", publicKey));
  const got = new Uint8Array(cert.publicKey.rawData);
  const sameKey = got.length === spki.length && got.every((v, i) => v === spki[i]);
  const signed = await cert.verify({ publicKey: ca.publicKey, signatureOnly: true })
    .catch(() => false);
  if (!signed || !sameKey || commonNameOf(cert) !== user || certificateRole(cert) !== "client") {
    throw agentError(
      "bad_answer",
      "The certificate that came back is not the one asked for (CA, key, user or role differ)",
    );
  }
}
