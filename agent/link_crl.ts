/**
 * The CRL one hub link keeps: the newest CA-signed CRL it has verified, by
 * CRL number, loaded from `crlFile` at start (so a restart does not forget
 * it), fetched from the hub when the hub announces a newer one, verified here
 * against the mesh CA (the hub cannot vouch for itself) and never rolled back
 * (an older CRL or a 503 cannot unrevoke a hub). A CRL that does not verify
 * raises the alarm shown in the link's state. Whether the hub itself is
 * revoked is asked by the link (`hub_link.ts`), which leaves such a hub.
 */
import type { ClientHttp2Session } from "node:http2";
import { type VerifiedCrl, verifyCrl } from "@ztm/shared/crl";
import { readTextIfExists, writeSecretFile } from "@ztm/shared/files";
import { errText, type Logger } from "@ztm/shared/log";
import type { RefusalLog } from "@ztm/shared/refusal_log";
import { HUB_PATHS, PROTOCOL_HEADER, PROTOCOL_VERSION } from "@ztm/shared/protocol";
import { readResponse } from "./hub_response.ts";
import type { MeshConfig } from "./runtime.ts";

/** Options for `LinkCrl`. */
export interface LinkCrlOptions {
  config: MeshConfig;
  log: Logger;
  /** Where refused CRL fetches are counted (a hostile hub must not flood the log). */
  refusals: RefusalLog;
  /** Where the newest verified CRL of this mesh is kept (`0600`); none: memory only. */
  crlFile?: string;
  /** Asked before writing an adopted CRL to `crlFile` (several links share one file). */
  shouldSaveCrl?: (number: number) => boolean;
  /** Told the revoked serials (and the CRL) each time a newer verified CRL is adopted. */
  onCrl?: (revoked: Set<string>, crl: VerifiedCrl) => void;
  /** The link's session now, if any: announced CRLs are fetched over it. */
  session: () => ClientHttp2Session | undefined;
  /** Told after each announced CRL was fetched (the hub's own certificate may be on it now). */
  fetched: () => void;
}

/** One link's CRL. Methods may be called concurrently; fetches of announced CRLs run one at a time. */
export class LinkCrl {
  #opts: LinkCrlOptions;
  #crl: VerifiedCrl | undefined;
  #fetch: Promise<void> | undefined;
  #alarm: string | null = null;
  /** The newest CRL number the hub announced. */
  #announced = 0;
  /** Settles once the CRL in `crlFile` was loaded (or refused); undefined before `load()`. */
  loaded: Promise<void> | undefined;

  constructor(opts: LinkCrlOptions) {
    this.#opts = opts;
  }

  /** Loads the CRL kept in `crlFile` (in the background: `loaded` settles when done). */
  load(): void {
    this.loaded = this.#load();
  }

  /** Why the last CRL seen (from the hub or `crlFile`) was refused; null while all is well. */
  alarm(): string | null {
    return this.#alarm;
  }

  /** The number of the newest CRL this link has verified (-1: none). */
  number(): number {
    return this.#crl?.number ?? -1;
  }

  /** Serials on the newest CA-signed CRL this link has verified. */
  revoked(): Set<string> {
    return this.#crl?.serials ?? new Set();
  }

  /** Whether `serial` is on the newest CRL this link has verified. */
  has(serial: string): boolean {
    return !!this.#crl?.serials.has(serial);
  }

  /**
   * Fetches the hub's CRL if it is newer than the one held, verifies it and
   * keeps it. A CRL that does not verify raises the alarm and throws.
   */
  async fetch(session: ClientHttp2Session): Promise<void> {
    const held = this.#crl?.number;
    const stream = session.request({
      ":method": "GET",
      ":path": held === undefined ? HUB_PATHS.crl : `${HUB_PATHS.crl}?after=${held}`,
      [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
    }, {
      endStream: true,
    });
    const { status, body } = await readResponse(stream);
    // 204: nothing newer than ours. 503: the hub has no CRL yet (it never reached the CA).
    if (status === 204 || status === 503) return;
    if (status !== 200) throw new Error(`hub answered ${status} for the CRL`);
    let crl: VerifiedCrl;
    try {
      crl = await this.#verify(body);
    } catch (err) {
      this.#raiseAlarm(`CRL from the hub refused: ${errText(err)}`);
      throw err;
    }
    this.adopt(crl, true);
  }

  /** Adopts a verified CRL if it is newer than the one held (and writes it to `crlFile` when `save`). */
  adopt(crl: VerifiedCrl, save: boolean): void {
    const held = this.#crl;
    if (held && crl.number <= held.number) {
      // Never roll back: an older CRL (a lagging or revoked hub's) changes nothing.
      if (crl.number < held.number) {
        this.#opts.log.warn("older crl ignored", { mesh: this.#opts.config.name, crl: crl.number });
      }
      return;
    }
    this.#crl = crl;
    this.#alarm = null;
    if (save && this.#opts.crlFile && (this.#opts.shouldSaveCrl?.(crl.number) ?? true)) {
      writeSecretFile(this.#opts.crlFile, crl.pem);
    }
    this.#opts.log.info("crl adopted", {
      mesh: this.#opts.config.name,
      count: crl.serials.size,
      crl: crl.number,
    });
    this.#opts.onCrl?.(crl.serials, crl);
  }

  /** The hub announced CRL `number`: fetch it if it is newer than ours (one fetch at a time). */
  announce(number: number): void {
    this.#announced = Math.max(this.#announced, number);
    this.#fetchAnnounced(number);
  }

  #fetchAnnounced(number: number): void {
    if (!Number.isSafeInteger(number) || (this.#crl && number <= this.#crl.number)) return;
    const session = this.#opts.session();
    if (!session || this.#fetch) return;
    const asked = this.#announced;
    this.#fetch = this.fetch(session).then(() => this.#opts.fetched()).catch((err) => {
      // Counted, not one line each: a hostile hub must not flood the log (a CRL that does not
      // verify raises the alarm in fetch).
      this.#opts.refusals.refused("bad_crl", `CRL from hub ignored: ${errText(err)}`);
    }).finally(() => {
      this.#fetch = undefined;
      // A newer one announced while this fetch ran is fetched now. A fetch that failed or
      // brought nothing newer is not tried again until the hub announces a higher number:
      // else a hub that announces a CRL it never serves keeps the agent fetching in a loop.
      if (this.#announced > asked && this.#announced > (this.#crl?.number ?? 0)) {
        this.#fetchAnnounced(this.#announced);
      }
    });
  }

  async #verify(pem: string): Promise<VerifiedCrl> {
    const started = performance.now();
    const crl = await verifyCrl(pem, this.#opts.config.ca);
    this.#opts.log.info("crl verified", {
      mesh: this.#opts.config.name,
      count: crl.serials.size,
      crl: crl.number,
      ms: Math.round(performance.now() - started),
    });
    return crl;
  }

  async #load(): Promise<void> {
    const file = this.#opts.crlFile;
    const pem = file ? readTextIfExists(file) : undefined;
    if (!pem) return;
    try {
      this.adopt(await verifyCrl(pem, this.#opts.config.ca), false);
    } catch (err) {
      this.#raiseAlarm(`stored CRL refused: ${errText(err)}`);
    }
  }

  #raiseAlarm(why: string): void {
    this.#opts.log.error("crl refused", { mesh: this.#opts.config.name, err: why });
    this.#alarm = why;
  }
}
