/**
 * The mesh's hub list, as this hub tells its agents (`hubs` control message,
 * `shared/protocol.ts`): every hub that announced its addresses to the CA and
 * holds a live hub certificate there, with that certificate, so agents can
 * check each hub themselves before they dial it. Hubs never talk to each
 * other; each one asks the CA (`GET /api/hubs`) every `everyMs`, and at once
 * when told something changed (its own announcement, a revocation).
 */
import {
  type HubListEntry,
  MAX_HUB_ADDRESSES,
  MAX_HUB_CERTIFICATE_CHARS,
  MAX_HUB_LIST,
} from "@ztm/shared/protocol";
import { errText, type Logger } from "@ztm/shared/log";

/** How often a hub asks the CA for the hub list by default (`--hub-list-every`). */
export const HUB_LIST_EVERY_MS = 10_000;
/** Largest hub list answer read from the CA. */
const MAX_ANSWER_CHARS = 2 * 1024 * 1024;

/** Options of a `HubList`. */
export interface HubListOptions {
  /** Asks the CA for its hub list (`CaRelay.hubs`). */
  ask: () => Promise<{ status: number; body: string }>;
  log: Logger;
  everyMs?: number;
  /** Told the list each time it changes (and the first time it is known). */
  onChange: (hubs: HubListEntry[]) => void;
}

/** Follows the CA's hub list. Call `start()` once, `close()` to stop. */
export class HubList {
  #opts: HubListOptions;
  #known = "";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;
  #failing = false;

  constructor(opts: HubListOptions) {
    this.#opts = opts;
  }

  /** Starts asking, unless a request (the hub's announcement asks at once) already began it. */
  start(): void {
    if (!this.#running && this.#timer === undefined) this.refresh();
  }

  /** Asks the CA now (once more after a request already under way). */
  refresh(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#running = this.#fetch().finally(() => {
      this.#running = undefined;
      if (this.#closed) return;
      if (this.#again) {
        this.#again = false;
        return this.refresh();
      }
      this.#timer = setTimeout(() => this.refresh(), this.#opts.everyMs ?? HUB_LIST_EVERY_MS);
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  async #fetch(): Promise<void> {
    let hubs: HubListEntry[];
    try {
      const { status, body } = await this.#opts.ask();
      if (status !== 200) throw new Error(`the CA answered ${status}`);
      if (body.length > MAX_ANSWER_CHARS) throw new Error("the CA's hub list is too large");
      hubs = entriesOf(JSON.parse(body));
    } catch (err) {
      if (!this.#failing) {
        this.#opts.log.warn("could not get the hub list from the CA; agents keep the last one", {
          err: errText(err),
        });
      }
      this.#failing = true;
      return;
    }
    if (this.#failing) this.#opts.log.info("hub list from the CA again", { count: hubs.length });
    this.#failing = false;
    const key = JSON.stringify(hubs);
    if (key === this.#known) return;
    this.#known = key;
    this.#opts.log.info("hub list changed", {
      count: hubs.length,
      addr: hubs.flatMap((h) => h.addresses).join(","),
    });
    this.#opts.onChange(hubs);
  }
}

/** The CA's `/api/hubs` answer as list entries: well-formed ones, newest first, bounded. */
function entriesOf(answer: unknown): HubListEntry[] {
  if (!Array.isArray(answer)) throw new Error("the CA's hub list is not a list");
  const out: HubListEntry[] = [];
  for (const h of answer) {
    if (out.length === MAX_HUB_LIST) break;
    const addresses = Array.isArray(h?.control)
      ? (h.control as unknown[]).filter((a): a is string =>
        typeof a === "string" && a.length <= 261
      )
        .slice(0, MAX_HUB_ADDRESSES)
      : [];
    const certificate = h?.certificate;
    if (
      !addresses.length || typeof certificate !== "string" ||
      certificate.length > MAX_HUB_CERTIFICATE_CHARS
    ) continue;
    out.push({ addresses, certificate });
  }
  return out.sort((a, b) => a.addresses[0].localeCompare(b.addresses[0]));
}
