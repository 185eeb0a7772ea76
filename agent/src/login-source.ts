/**
 * What the host can say about a login's source address, for the signed context the phone shows
 * (docs/protocol.md §context): the address's reverse name, only when it is forward-confirmed
 * (the name resolves back to the address: a PTR record alone is whatever the address's owner
 * wrote there), and whether this user has logged in from the address before.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { RHOST_NAME_PATTERN } from '../../protocol/src/index.js';
import { SavedRecords } from './saved-records.js';
import { readStateJson } from './state-file.js';

/** Per DNS query (c-ares) and for the whole name lookup: the phone asks for the context after a scan, seconds later. */
const QUERY_TIMEOUT_MS = 300;
const LOOKUP_BUDGET_MS = 1000;
const NAME_CACHE_ENTRIES = 1000;
const NAME_CACHE_MS = 10 * 60_000;
/** PTR answers looked at; an address with more names is unusual and each costs a forward query. */
const MAX_NAMES = 3;
/** getaddrinfo calls at once, of libuv's 4 pool threads (forward confirmation only). */
const MAX_FORWARD_IN_FLIGHT = 2;

/**
 * What a lookup that got no answer gives: a timeout, a nameserver that failed, or a forward
 * lookup skipped over the cap. Never cached, unlike "no name": a burst of logins or a
 * nameserver's bad minute must not hide an address's name for NAME_CACHE_MS.
 */
const UNANSWERED = Symbol('unanswered');

/** "No such name" or "no such record" is the DNS's answer (kept); any other failure is none. */
function isNoSuchName(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === dns.NOTFOUND || code === dns.NODATA;
}

/** '::ffff:192.0.2.1' and '192.0.2.1' are one address; IPv6 in one spelling. */
function canonicalAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIP(address) === 6) {
    try {
      return new URL(`http://[${address}]/`).hostname.slice(1, -1);
    } catch {
      return address.toLowerCase();
    }
  }
  return address;
}

export interface ReverseNamesOptions {
  /** The PTR query. @default a c-ares Resolver, QUERY_TIMEOUT_MS a query, one try */
  reverse?: (address: string) => Promise<string[]>;
  /** The forward confirmation. @default getaddrinfo (`dns.lookup` with `all: true`) */
  lookup?: (name: string) => Promise<Array<{ address: string }>>;
}

export class ReverseNames {
  private readonly cache = new Map<string, { name: string | undefined; until: number }>();
  /** Lookups under way: logins from one address at once share one (bounded by the PAM connections). */
  private readonly inFlight = new Map<string, Promise<string | undefined>>();
  private readonly resolver = new dns.Resolver({ timeout: QUERY_TIMEOUT_MS, tries: 1 });
  /** getaddrinfo calls running now (they hold a libuv pool thread each until they end). */
  private forwardInFlight = 0;
  private readonly reverse: (address: string) => Promise<string[]>;
  private readonly lookup: (name: string) => Promise<Array<{ address: string }>>;

  /** `options`: other resolvers, for tests that must hold a lookup or answer it their way. */
  constructor(options: ReverseNamesOptions = {}) {
    this.reverse = options.reverse ?? ((address) => this.resolver.reverse(address));
    this.lookup = options.lookup ?? ((name) => dns.lookup(name, { all: true }));
  }

  /**
   * The forward-confirmed name of an IP address, or undefined (not an IP, no PTR, no name that
   * resolves back, a name the phone should not show, or no answer within the budget). Never throws.
   */
  async nameOf(rhost: string, now = Date.now()): Promise<string | undefined> {
    if (isIP(rhost) === 0) return undefined; // sshd with UseDNS passes a name already (it checked it)
    const address = canonicalAddress(rhost);
    const hit = this.cache.get(address);
    if (hit && hit.until > now) return hit.name;
    let lookup = this.inFlight.get(address);
    if (!lookup) {
      lookup = this.lookUp(address, now).finally(() => this.inFlight.delete(address));
      this.inFlight.set(address, lookup);
    }
    return lookup;
  }

  /** One budgeted lookup, cached when the DNS answered. */
  private async lookUp(address: string, now: number): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<typeof UNANSWERED>((resolve) => {
      timer = setTimeout(() => resolve(UNANSWERED), LOOKUP_BUDGET_MS);
      timer.unref();
    });
    const name = await Promise.race([this.confirmed(address), budget]).finally(() => clearTimeout(timer));
    if (name === UNANSWERED) return undefined;
    this.cache.delete(address);
    this.cache.set(address, { name, until: now + NAME_CACHE_MS });
    while (this.cache.size > NAME_CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    return name;
  }

  private async confirmed(address: string): Promise<string | undefined | typeof UNANSWERED> {
    let names: string[];
    try {
      names = await this.reverse(address);
    } catch (err) {
      return isNoSuchName(err) ? undefined : UNANSWERED;
    }
    let unanswered = false;
    for (const raw of names.slice(0, MAX_NAMES)) {
      const name = raw.replace(/\.$/, '');
      if (!RHOST_NAME_PATTERN.test(name)) continue;
      // getaddrinfo, as sshd's own UseDNS check does (so /etc/hosts counts). It runs on libuv's
      // small thread pool and outlives the budget when a name's nameserver is slow, which whoever
      // controls the PTR records can arrange: only a few at a time, so the pool stays free for
      // the agent's own work (relay reconnects, file writes). Over the cap the name is not shown
      // this time.
      if (this.forwardInFlight >= MAX_FORWARD_IN_FLIGHT) return UNANSWERED;
      this.forwardInFlight += 1;
      try {
        const back = await this.lookup(name);
        if (back.some((a) => canonicalAddress(a.address) === address)) return name;
      } catch (err) {
        // Try the next; a name that only went unanswered (EAI_AGAIN) may still confirm next time.
        if (!isNoSuchName(err)) unanswered = true;
      } finally {
        this.forwardInFlight -= 1;
      }
    }
    return unanswered ? UNANSWERED : undefined;
  }

  cancel(): void {
    this.resolver.cancel();
  }
}

const MAX_SEEN = 10_000;
/** Well above MAX_SEEN hashes and times (~60 bytes each). */
const MAX_SEEN_FILE_BYTES = 4 << 20;

/** The file's salt and well-formed entries; any other entry is skipped, a file without a valid salt read as empty. */
function seenFile(json: unknown): { salt: Buffer; seen: Array<[string, number]> } | null {
  if (!json || typeof json !== 'object' || Array.isArray(json)) return null;
  const { salt, seen } = json as { salt?: unknown; seen?: unknown };
  if (typeof salt !== 'string' || !/^[0-9a-f]{32}$/.test(salt) || !seen || typeof seen !== 'object') return null;
  const entries = Object.entries(seen as Record<string, unknown>).filter((e): e is [string, number] => /^[A-Za-z0-9_-]{43}$/.test(e[0]) && typeof e[1] === 'number' && Number.isInteger(e[1]));
  return { salt: Buffer.from(salt, 'hex'), seen: entries };
}

/**
 * The addresses each user logged in from successfully, as salted hashes with the last time
 * (unix seconds), in <stateDir>/seen-addresses.json, 0600 and bounded (the oldest go first):
 * where people log in from is private, so the file holds no address and only the agent reads it.
 */
export class SeenAddresses {
  private salt: Buffer;
  private readonly records: SavedRecords<number>;

  constructor(stateDir: string) {
    const path = join(stateDir, 'seen-addresses.json');
    this.salt = randomBytes(16);
    this.records = new SavedRecords(path, MAX_SEEN, (entries) => JSON.stringify({ salt: this.salt.toString('hex'), seen: Object.fromEntries(entries) }));
    try {
      // Made 0600 if others could read it; a symlink or anything unsafe: start empty, never follow it.
      const saved = readStateJson(path, { maxBytes: MAX_SEEN_FILE_BYTES }, seenFile);
      if (!saved) return;
      this.salt = saved.salt;
      for (const [k, v] of saved.seen) this.records.load(k, v);
    } catch {
      /* unsafe or unreadable: every address is new, which is the cautious answer */
    }
  }

  private key(user: string, rhost: string): string {
    return createHash('sha256').update(this.salt).update(user).update('\0').update(canonicalAddress(rhost)).digest('base64url');
  }

  /** Whether this user has no successful login from this address on record. */
  isFirst(user: string, rhost: string): boolean {
    return !this.records.has(this.key(user, rhost));
  }

  record(user: string, rhost: string, now = Date.now()): void {
    this.records.set(this.key(user, rhost), Math.floor(now / 1000));
  }

  /** Saves now (at shutdown), after any save in progress. */
  flush(): Promise<void> {
    return this.records.flush();
  }
}

/** What SessionStore asks about a login's source (absent: the context carries neither fact). */
export interface LoginSource {
  names?: ReverseNames;
  seen: SeenAddresses;
}
