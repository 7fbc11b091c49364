/**
 * Invites: one printable string that lets a new device join the mesh as a
 * user, with a key made on the device.
 *
 * An invite carries the hubs' addresses (control and enrollment), the SHA-256
 * fingerprint of the CA certificate (the joiner pins the CA it is handed) and
 * a 256-bit secret. The CA keeps only an HMAC key derived from the secret. To
 * enroll, the device sends `{invite, endpoint, csr, proof}` through the hub,
 * where `proof` is HMAC(key, invite id, endpoint, CSR): the hub carries it but
 * cannot make a proof for any other CSR (so it cannot mint a certificate with
 * the invite), cannot read the secret from it, and replaying it yields at most
 * a certificate for the device's own key (and only while a use is left).
 *
 * Refusals give no oracle: an unknown id and a wrong proof get the same 403
 * (the HMAC is computed either way); only a request whose proof verifies (its
 * sender holds the secret) learns that the invite is used, expired or
 * revoked. Failed proofs are counted in one bucket (no state per guess), and
 * the hub limits each address before that (`hub/enrollment.ts`).
 */
import type { DatabaseSync } from "node:sqlite";
import type { ZtmError } from "@ztm/shared/errors";
import { json, readText, type Route } from "@ztm/shared/http";
import type { Logger } from "@ztm/shared/log";
import {
  decodeInvite,
  encodeInvite,
  enrollmentProof,
  type InvitePayload,
  inviteProofKey,
} from "@ztm/shared/invite";
import { certificateSummary } from "./devices.ts";
import { caError } from "./errors.ts";
import { checkEndpointName, checkName, type Issuer } from "./issue.ts";
import type { CaStore, CertificateRecord } from "./store.ts";

export { decodeInvite, encodeInvite, type InvitePayload };

/** Longest an invite may live, ms (30 days). */
export const MAX_INVITE_MS = 30 * 24 * 3_600_000;
/** Most uses one invite may have. */
export const MAX_INVITE_USES = 100;
/** Hubs that announced themselves this recently go into new invites. */
const HUB_FRESH_MS = 30 * 24 * 3_600_000;
const MAX_BODY_BYTES = 16 * 1024;

/** One invite as listed (never with its secret). */
export interface InviteRecord {
  id: string;
  user: string;
  createdAt: string;
  expiresAt: string;
  usesLeft: number;
  uses: number;
  revokedAt: string | null;
  hubs: { control: string[]; enroll: string[] };
  state: "active" | "used" | "expired" | "revoked";
}

/** A hub as it announced itself to the CA. */
export interface HubRecord {
  serial: string;
  control: string[];
  enroll: string[];
  seenAt: string;
  /**
   * The hub's certificate (PEM): agents that are told this hub by another hub check it
   * themselves (mesh CA, hub role, not revoked, the address's host among its names).
   */
  certificate: string;
}

type Row = Record<string, unknown>;

function toInvite(row: Row): InviteRecord {
  const hubs = JSON.parse(row.hubs as string) as { control: string[]; enroll: string[] };
  const revokedAt = (row.revoked_at as string | null) ?? null;
  const usesLeft = row.uses_left as number;
  const expiresAt = row.expires_at as string;
  return {
    id: row.id as string,
    user: row.user as string,
    createdAt: row.created_at as string,
    expiresAt,
    usesLeft,
    uses: row.uses as number,
    revokedAt,
    hubs,
    state: revokedAt !== null
      ? "revoked"
      : usesLeft <= 0
      ? "used"
      : Date.parse(expiresAt) <= Date.now()
      ? "expired"
      : "active",
  };
}

/** A token bucket: `take()` is false when empty. No state beyond two numbers. */
export class Bucket {
  #tokens: number;
  #at = Date.now();

  constructor(readonly perSecond: number, readonly burst: number) {
    this.#tokens = burst;
  }

  take(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.perSecond);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

const HOST_PORT = /^[A-Za-z0-9.\-:\[\]]{1,260}:\d{1,5}$/;

function checkAddresses(list: unknown, what: string): string[] {
  if (!Array.isArray(list) || list.length > 16 || list.some((a) => typeof a !== "string")) {
    throw caError("bad_hubs", `${what} must be a list of up to 16 "host:port" strings`);
  }
  for (const a of list as string[]) {
    if (!HOST_PORT.test(a)) {
      throw caError("bad_hubs", `${what}: "${a.slice(0, 80)}" is not host:port`);
    }
  }
  return list as string[];
}

/** The enrollment port that goes with a hub's control address when none was announced. */
export function defaultEnrollAddress(control: string): string {
  const i = control.lastIndexOf(":");
  return `${control.slice(0, i)}:${Number(control.slice(i + 1)) + 2}`;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** A refusal that tells nothing about the invite. */
function refused(): ZtmError {
  return caError(
    "invite_refused",
    "The invite was refused: it is not known here or the proof does not match it",
  );
}

/** What `InviteService` needs. */
export interface InviteServiceOptions {
  store: CaStore;
  issuer: Issuer;
  caCertificatePem: string;
  caFingerprint: string;
  log: Logger;
  /** Failed proofs the CA checks per second, all callers together; default 20 (burst 100). */
  failuresPerSecond?: number;
}

/** Invites and enrollment. */
export class InviteService {
  #opts: InviteServiceOptions;
  #db: DatabaseSync;
  #failures: Bucket;
  /** A key to check unknown ids against, so that they cost what a known one does. */
  #decoy = crypto.getRandomValues(new Uint8Array(32));

  constructor(opts: InviteServiceOptions) {
    this.#opts = opts;
    this.#db = opts.store.database;
    const rate = opts.failuresPerSecond ?? 20;
    this.#failures = new Bucket(rate, rate * 5);
  }

  /**
   * Hubs recorded by `announceHub` whose certificate is live (a hub certificate of this CA,
   * not revoked, not expired), newest first.
   */
  hubs(): HubRecord[] {
    const rows = this.#db.prepare(
      `SELECT h.*, c.certificate FROM hubs h JOIN certificates c ON c.serial = h.serial
       WHERE c.role = 'hub' AND c.revoked_at IS NULL AND c.not_after > ?
       ORDER BY h.seen_at DESC`,
    ).all(new Date().toISOString()) as Row[];
    return rows.map((r) => ({
      serial: r.serial as string,
      control: JSON.parse(r.control as string),
      enroll: JSON.parse(r.enroll as string),
      seenAt: r.seen_at as string,
      certificate: r.certificate as string,
    }));
  }

  /** Records the addresses a hub (by its certificate serial) is reached on. */
  announceHub(serial: string, control: string[], enroll: string[]): void {
    this.#db.prepare(
      `INSERT INTO hubs (serial, control, enroll, seen_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (serial) DO UPDATE SET control = excluded.control, enroll = excluded.enroll,
         seen_at = excluded.seen_at`,
    ).run(serial, JSON.stringify(control), JSON.stringify(enroll), new Date().toISOString());
    // One row per hub: a hub that renewed its certificate replaces its old row.
    this.#db.prepare("DELETE FROM hubs WHERE serial != ? AND control = ?")
      .run(serial, JSON.stringify(control));
  }

  /** Makes an invite; returns its record and the printable string (the only copy of the secret). */
  async create(
    input: {
      user: string;
      hubs?: string[];
      enroll?: string[];
      expiresInMs?: number;
      uses?: number;
    },
  ): Promise<{ invite: string; record: InviteRecord }> {
    checkName(input.user);
    const expiresInMs = input.expiresInMs ?? 3_600_000;
    if (!Number.isSafeInteger(expiresInMs) || expiresInMs < 1000 || expiresInMs > MAX_INVITE_MS) {
      throw caError("bad_expiry", "An invite lives from 1 s to 30 days");
    }
    const uses = input.uses ?? 1;
    if (!Number.isSafeInteger(uses) || uses < 1 || uses > MAX_INVITE_USES) {
      throw caError("bad_uses", `An invite has 1 to ${MAX_INVITE_USES} uses`);
    }
    let control = input.hubs ? checkAddresses(input.hubs, "hubs") : [];
    let enroll = input.enroll ? checkAddresses(input.enroll, "enroll") : [];
    if (!control.length) {
      const fresh = this.hubs().filter((h) => Date.now() - Date.parse(h.seenAt) < HUB_FRESH_MS);
      control = fresh.flatMap((h) => h.control);
      if (!enroll.length) enroll = fresh.flatMap((h) => h.enroll);
    }
    if (!control.length) {
      throw caError(
        "no_hubs",
        "No hub has announced its address to this CA: name the hubs (ztm invite --hub=HOST:PORT)",
      );
    }
    if (!enroll.length) enroll = control.map(defaultEnrollAddress);
    control = [...new Set(control)];
    enroll = [...new Set(enroll)];
    const id = randomHex(8);
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const now = Date.now();
    this.#db.prepare(
      `INSERT INTO invites (id, user, proof_key, created_at, expires_at, uses_left, hubs)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      id,
      input.user,
      await inviteProofKey(secret),
      new Date(now).toISOString(),
      new Date(now + expiresInMs).toISOString(),
      uses,
      JSON.stringify({ control, enroll }),
    );
    const payload: InvitePayload = {
      user: input.user,
      id,
      secret,
      caFingerprint: this.#opts.caFingerprint,
      hubs: control,
      enroll,
    };
    this.#opts.log.info("invite created", { user: input.user, invite: id, count: uses });
    return { invite: encodeInvite(payload), record: this.get(id)! };
  }

  /** The invite with `id`, if any. */
  get(id: string): InviteRecord | undefined {
    const row = this.#db.prepare("SELECT * FROM invites WHERE id = ?").get(id) as Row | undefined;
    return row ? toInvite(row) : undefined;
  }

  /** Every invite, newest first. */
  list(): InviteRecord[] {
    return (this.#db.prepare("SELECT * FROM invites ORDER BY created_at DESC, id").all() as Row[])
      .map(toInvite);
  }

  /** Revokes an invite: its uses left can no longer be used. Throws `NotFound`. */
  revoke(id: string): InviteRecord {
    const changed = this.#db.prepare(
      "UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
    ).run(new Date().toISOString(), id);
    if (Number(changed.changes) !== 1) {
      throw caError("unknown_invite", `No unrevoked invite "${id.slice(0, 40)}"`);
    }
    this.#opts.log.info("invite revoked", { invite: id });
    return this.get(id)!;
  }

  /**
   * Enrolls a device: checks the proof, takes one use of the invite, and signs the CSR as
   * the invite's user for `endpoint`. Gives the use back if signing fails.
   */
  async enroll(body: Record<string, unknown>): Promise<CertificateRecord> {
    const { invite, endpoint, csr, proof } = body;
    if (
      typeof invite !== "string" || typeof endpoint !== "string" || typeof csr !== "string" ||
      typeof proof !== "string" || invite.length > 64 || csr.length > 8192 || proof.length > 100
    ) {
      throw caError("bad_enrollment", "An enrollment is {invite, endpoint, csr, proof}");
    }
    checkEndpointName(endpoint);
    const row = /^[0-9a-f]{16}$/.test(invite)
      ? this.#db.prepare("SELECT * FROM invites WHERE id = ?").get(invite) as Row | undefined
      : undefined;
    const key = row ? new Uint8Array(row.proof_key as Uint8Array) : this.#decoy;
    const expected = await enrollmentProof(key, invite, endpoint, csr);
    let given: Uint8Array;
    try {
      given = Uint8Array.fromBase64(proof, { alphabet: "base64url" });
    } catch {
      given = new Uint8Array(0);
    }
    if (!row || !equalBytes(expected, given)) {
      if (!this.#failures.take()) {
        throw caError("too_many_attempts", "Too many refused invites; try later");
      }
      throw refused();
    }
    // The proof verified: the caller holds the secret, so it may learn why the invite fails.
    const rec = toInvite(row);
    const now = new Date().toISOString();
    const taken = this.#db.prepare(
      `UPDATE invites SET uses_left = uses_left - 1, uses = uses + 1
       WHERE id = ? AND uses_left > 0 AND revoked_at IS NULL AND expires_at > ?`,
    ).run(invite, now);
    if (Number(taken.changes) !== 1) {
      const state = this.get(invite)!.state;
      if (state === "revoked") throw caError("invite_revoked", "This invite was revoked");
      if (state === "expired") throw caError("invite_expired", "This invite has expired");
      throw caError("invite_used", "This invite has been used already");
    }
    try {
      const record = await this.#opts.issuer.signDeviceCsr(rec.user, endpoint, csr);
      this.#opts.log.info("invite used", {
        invite,
        user: rec.user,
        endpoint,
        serial: record.serial,
      });
      return record;
    } catch (err) {
      this.#db.prepare("UPDATE invites SET uses_left = uses_left + 1, uses = uses - 1 WHERE id = ?")
        .run(invite);
      throw err;
    }
  }

  /** The CA certificate PEM enrolled devices are given. */
  get caCertificatePem(): string {
    return this.#opts.caCertificatePem;
  }
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

async function readObject(req: Request): Promise<Record<string, unknown>> {
  const raw = await readText(req, MAX_BODY_BYTES);
  let body: unknown;
  try {
    body = raw.trim() === "" ? {} : JSON.parse(raw);
  } catch {
    body = undefined;
  }
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw caError("bad_json", "Body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

const DURATION_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `15m`, `1h`, `7d` in ms; undefined for anything else. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,7})([smhd])$/.exec(text);
  return m ? Number(m[1]) * DURATION_MS[m[2]] : undefined;
}

/** The CA's invite and enrollment routes; `requireToken` guards the hubs' announcements. */
export function inviteRoutes(
  invites: InviteService,
  requireToken: (req: Request) => void,
): Route[] {
  return [
    {
      method: "POST",
      pattern: "/api/invites",
      handler: async (req) => {
        const body = await readObject(req);
        if (typeof body.user !== "string") {
          throw caError("bad_user", "An invite names its user: {user: NAME}");
        }
        let expiresInMs: number | undefined;
        if (body.expires !== undefined) {
          expiresInMs = typeof body.expires === "string" ? parseDuration(body.expires) : undefined;
          if (expiresInMs === undefined) {
            throw caError("bad_expiry", 'expires is a duration such as "15m", "1h", "7d"');
          }
        }
        if (body.uses !== undefined && typeof body.uses !== "number") {
          throw caError("bad_uses", "uses is a whole number");
        }
        const made = await invites.create({
          user: body.user,
          hubs: body.hubs === undefined ? undefined : checkAddresses(body.hubs, "hubs"),
          enroll: body.enroll === undefined ? undefined : checkAddresses(body.enroll, "enroll"),
          expiresInMs,
          uses: body.uses as number | undefined,
        });
        return json({ invite: made.invite, ...made.record }, 201);
      },
    },
    { method: "GET", pattern: "/api/invites", handler: () => json(invites.list()) },
    {
      method: "DELETE",
      pattern: "/api/invites/:id",
      handler: (_req, p) => json({ revoked: invites.revoke(p.id) }),
    },
    {
      method: "POST",
      pattern: "/api/enrollments",
      handler: async (req) => {
        const record = await invites.enroll(await readObject(req));
        return json({
          certificate: record.certificate,
          ca: invites.caCertificatePem,
          ...certificateSummary(record),
        }, 201);
      },
    },
    { method: "GET", pattern: "/api/hubs", handler: () => json(invites.hubs()) },
    {
      method: "PUT",
      pattern: "/api/hubs/:serial",
      handler: async (req, p) => {
        requireToken(req);
        if (!/^[0-9a-f]{1,64}$/.test(p.serial)) {
          throw caError("bad_serial", "The serial is the hub certificate's hex serial");
        }
        const body = await readObject(req);
        invites.announceHub(
          p.serial,
          checkAddresses(body.control, "control"),
          checkAddresses(body.enroll ?? [], "enroll"),
        );
        return json({ ok: true });
      },
    },
  ];
}
