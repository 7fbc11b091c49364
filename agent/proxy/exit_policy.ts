/**
 * An exit's destination list, and the check its agent runs before dialing
 * anything for a caller: "may this user reach this host and port through
 * this endpoint, and at which address?".
 *
 * A list is rules; the default is no rule (the exit reaches nothing). Each
 * rule names destinations — a CIDR (`10.2.0.0/16`, `2001:db8::/32`, a single
 * address) or a domain glob (`intranet.office.lan`, `*.office.lan`, `*`) —
 * the ports (`80`, `8000-8100`, `*`), and the users it admits (by default
 * only the exit's own user and `root`; `*` is every member).
 *
 * The check resolves a name itself and returns the address to dial, so what
 * was checked is what is dialled (no second lookup a DNS answer could change).
 * An address is allowed when a CIDR rule covers it, or when the name matched
 * a glob rule; loopback, link-local, unspecified and multicast addresses are
 * refused unless a rule's CIDR lies inside such a range itself (listing
 * `0.0.0.0/0` does not open the exit's own loopback; `127.0.0.1/32` does).
 * Everything is refused before any packet leaves the exit.
 */
import { agentError, type ExitRule } from "@ztm/shared/agent_api";
// Defined by the API contract; re-exported for this package's modules.
export type { ExitRule };

/** Resolves a host name to addresses (A and AAAA). */
export type Resolver = (host: string) => Promise<string[]>;

/** The caller and the exit's owner, for the user check. */
export interface ExitCaller {
  user: string;
  owner: string;
}

type Cidr = { v6: boolean; net: bigint; bits: number; special: boolean };

interface CompiledRule {
  cidrs: Cidr[];
  globs: string[];
  ports: [number, number][];
  users: string[];
}

const MAX_RULES = 256;
const MAX_ITEMS = 256;

/** Parses an IPv4 or IPv6 literal (brackets allowed) to its family and value; null if not one. */
export function parseIp(text: string): { v6: boolean; value: bigint } | null {
  const t = text.replace(/^\[(.*)\]$/, "$1");
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(t);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    if (parts.some((p) => p > 255)) return null;
    return {
      v6: false,
      value: BigInt(((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3]),
    };
  }
  if (!/^[0-9A-Fa-f:.]+$/.test(t) || !t.includes(":")) return null;
  let head = t;
  let tail4: bigint | null = null;
  const dotted = /^(.*:)(\d{1,3}(?:\.\d{1,3}){3})$/.exec(t);
  if (dotted) {
    const v4 = parseIp(dotted[2]);
    if (!v4) return null;
    tail4 = v4.value;
    head = dotted[1] + "0:0";
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const words = (s: string) => (s === "" ? [] : s.split(":"));
  const left = words(halves[0]);
  const right = halves.length === 2 ? words(halves[1]) : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...left, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...right];
  let value = 0n;
  for (const w of all) {
    if (!/^[0-9A-Fa-f]{1,4}$/.test(w)) return null;
    value = (value << 16n) | BigInt(parseInt(w, 16));
  }
  if (tail4 !== null) value = (value & ~0xffffffffn) | tail4;
  // An IPv4-mapped address is its IPv4 address (`::ffff:127.0.0.1` is loopback).
  if (value >> 32n === 0xffffn) return { v6: false, value: value & 0xffffffffn };
  return { v6: true, value };
}

/** Ranges never dialled unless a rule lists inside them: loopback, link-local, unspecified, multicast. */
const SPECIAL: Cidr[] = [
  "127.0.0.0/8",
  "169.254.0.0/16",
  "0.0.0.0/8",
  "224.0.0.0/4",
  "255.255.255.255/32",
  "::1/128",
  "::/128",
  "fe80::/10",
  "ff00::/8",
].map((c) => parseCidr(c, false)!);

function parseCidr(text: string, markSpecial = true): Cidr | null {
  const [addr, len, ...more] = text.split("/");
  if (more.length) return null;
  const ip = parseIp(addr);
  if (!ip) return null;
  const max = ip.v6 ? 128 : 32;
  const bits = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : -1;
  if (bits < 0 || bits > max) return null;
  const net = mask(ip.value, bits, max);
  const cidr = { v6: ip.v6, net, bits, special: false };
  // A rule inside a special range lists it explicitly.
  cidr.special = markSpecial &&
    SPECIAL.some((s) => s.v6 === cidr.v6 && s.bits <= bits && covers(s, net));
  return cidr;
}

function mask(value: bigint, bits: number, max: number): bigint {
  const shift = BigInt(max - bits);
  return (value >> shift) << shift;
}

function covers(c: Cidr, value: bigint): boolean {
  return mask(value, c.bits, c.v6 ? 128 : 32) === c.net;
}

const GLOB = /^(\*|(\*\.)?[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*)$/;

function parsePorts(list: string[] | undefined, where: string): [number, number][] {
  if (list === undefined) return [[1, 65535]];
  return list.map((p) => {
    if (p === "*") return [1, 65535];
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(p);
    const lo = m ? Number(m[1]) : 0;
    const hi = m?.[2] ? Number(m[2]) : lo;
    if (!m || lo < 1 || hi > 65535 || hi < lo) {
      throw agentError(
        "bad_exit",
        `${where}: bad port "${p.slice(0, 20)}"; use 80, 8000-8100 or *`,
      );
    }
    return [lo, hi];
  });
}

/** A checked exit list. */
export class ExitPolicy {
  #rules: CompiledRule[];

  /** Compiles `rules`. Throws `BadRequest` (`bad_exit`) naming the bad item. */
  constructor(rules: ExitRule[]) {
    if (!Array.isArray(rules) || rules.length > MAX_RULES) {
      throw agentError("bad_exit", `An exit list is an array of at most ${MAX_RULES} rules`);
    }
    this.#rules = rules.map((r, i) => {
      const where = `exit rule ${i + 1}`;
      if (
        !Array.isArray(r.destinations) || r.destinations.length === 0 ||
        r.destinations.length > MAX_ITEMS
      ) {
        throw agentError(
          "bad_exit",
          `${where}: destinations must list 1 to ${MAX_ITEMS} CIDRs or names`,
        );
      }
      const cidrs: Cidr[] = [];
      const globs: string[] = [];
      for (const d of r.destinations) {
        if (typeof d !== "string") {
          throw agentError("bad_exit", `${where}: a destination is a string`);
        }
        const cidr = parseCidr(d);
        if (cidr) cidrs.push(cidr);
        else if (GLOB.test(d) && !/^[\d.]+$/.test(d)) globs.push(d.toLowerCase());
        else {throw agentError(
            "bad_exit",
            `${where}: "${d.slice(0, 100)}" is neither a CIDR nor a domain glob`,
          );}
      }
      return { cidrs, globs, ports: parsePorts(r.ports, where), users: r.users ?? [] };
    });
  }

  /**
   * Checks `caller` against the list for `host:port` and returns the address
   * to dial. Throws `Forbidden` (`exit_denied`) with the reason; resolves a
   * name with `resolve` (its failure is a refusal too).
   */
  async check(caller: ExitCaller, host: string, port: number, resolve: Resolver): Promise<string> {
    const shown = `${host.slice(0, 255)}:${port}`;
    const deny = (why: string) => agentError("exit_denied", `Exit refuses ${shown}: ${why}`);
    if (this.#rules.length === 0) throw deny("this exit lists no destination");
    const admitted = this.#rules.filter((r) =>
      caller.user === caller.owner || caller.user === "root" || r.users.includes("*") ||
      r.users.includes(caller.user)
    );
    if (admitted.length === 0) throw deny(`user "${caller.user}" may not use this exit`);
    const rules = admitted.filter((r) => r.ports.some(([lo, hi]) => port >= lo && port <= hi));
    if (rules.length === 0) throw deny("port not listed");
    const literal = parseIp(host);
    const name = literal ? null : host.replace(/\.$/, "").toLowerCase();
    const byName = name !== null && rules.some((r) => r.globs.some((g) => globMatches(g, name)));
    let addresses: string[];
    if (literal) {
      addresses = [host.replace(/^\[(.*)\]$/, "$1")];
    } else {
      if (!/^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$/.test(name!)) throw deny("not a host name");
      try {
        addresses = await resolve(name!);
      } catch {
        throw deny("the name does not resolve here");
      }
      if (addresses.length === 0) throw deny("the name does not resolve here");
    }
    let why = "destination not listed";
    for (const a of addresses) {
      const ip = parseIp(a);
      if (!ip) continue;
      const special = SPECIAL.some((s) => s.v6 === ip.v6 && covers(s, ip.value));
      const cidr = rules.some((r) =>
        r.cidrs.some((c) => c.v6 === ip.v6 && covers(c, ip.value) && (!special || c.special))
      );
      if (cidr || (byName && !special)) return a;
      if (special) why = `${a} is this exit's own or a link-local address, not listed explicitly`;
      else if (!literal) why = `the name resolves to ${a}, outside the list`;
    }
    throw deny(why);
  }
}

function globMatches(glob: string, name: string): boolean {
  if (glob === "*") return true;
  if (glob.startsWith("*.")) return name.endsWith(glob.slice(1)) && name.length > glob.length - 1;
  return glob === name;
}

/** A resolver over the system's DNS (A and AAAA). */
export const systemResolver: Resolver = async (host) => {
  const [a, aaaa] = await Promise.allSettled([
    Deno.resolveDns(host, "A"),
    Deno.resolveDns(host, "AAAA"),
  ]);
  const out = [
    ...(a.status === "fulfilled" ? a.value : []),
    ...(aaaa.status === "fulfilled" ? aaaa.value : []),
  ];
  if (out.length === 0 && a.status === "rejected") throw a.reason;
  return out;
};
