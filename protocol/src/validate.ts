/**
 * A tiny schema checker for messages from outside (Socket.IO events, JSON files, handshakes).
 * No dependency: every rule here is a bound we rely on for safety, so it stays readable.
 * Unknown keys are rejected: a message carries exactly what its schema says.
 */
import { QrauthError } from './errors.js';

export type Check<T> = (v: unknown, path: string) => T;

function fail(path: string, what: string): never {
  throw new QrauthError('QRA_ERR_INVALID_INPUT', `${path}: ${what}`);
}

export function str(opts: { max: number; min?: number; pattern?: RegExp }): Check<string> {
  return (v, path) => {
    if (typeof v !== 'string') fail(path, 'expected a string');
    if (v.length > opts.max) fail(path, `longer than ${opts.max} characters`);
    if (v.length < (opts.min ?? 0)) fail(path, `shorter than ${opts.min} characters`);
    if (opts.pattern && !opts.pattern.test(v)) fail(path, 'has an invalid format');
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(v)) fail(path, 'contains control characters');
    return v;
  };
}

export function int(opts: { min: number; max: number }): Check<number> {
  return (v, path) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(path, 'expected an integer');
    if (v < opts.min || v > opts.max) fail(path, `out of range ${opts.min}..${opts.max}`);
    return v;
  };
}

export function oneOf<const T extends readonly string[]>(values: T): Check<T[number]> {
  return (v, path) => {
    if (typeof v !== 'string' || !values.includes(v)) fail(path, `expected one of ${values.join(', ')}`);
    return v as T[number];
  };
}

export function literal<const T extends string | number | boolean>(value: T): Check<T> {
  return (v, path) => {
    if (v !== value) fail(path, `expected ${JSON.stringify(value)}`);
    return value;
  };
}

export function bool(): Check<boolean> {
  return (v, path) => {
    if (typeof v !== 'boolean') fail(path, 'expected true or false');
    return v;
  };
}

export function optional<T>(check: Check<T>): Check<T | undefined> & { optional: true } {
  const c = ((v: unknown, path: string) => (v === undefined ? undefined : check(v, path))) as Check<T | undefined> & {
    optional: true;
  };
  c.optional = true;
  return c;
}

export function arrayOf<T>(check: Check<T>, maxItems: number): Check<T[]> {
  return (v, path) => {
    if (!Array.isArray(v)) fail(path, 'expected an array');
    if (v.length > maxItems) fail(path, `more than ${maxItems} items`);
    return v.map((item, i) => check(item, `${path}[${i}]`));
  };
}

type Shape = Record<string, Check<unknown>>;
type Out<S extends Shape> = { [K in keyof S]: S[K] extends Check<infer T> ? T : never };

export function object<S extends Shape>(shape: S): Check<Out<S>> {
  return (v, path) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path, 'expected an object');
    const rec = v as Record<string, unknown>;
    for (const k of Object.keys(rec)) if (!Object.hasOwn(shape, k)) fail(path, `unexpected field "${k.slice(0, 40)}"`);
    const out: Record<string, unknown> = {};
    for (const [k, check] of Object.entries(shape)) {
      const val = check(rec[k], `${path}.${k}`);
      if (val !== undefined) out[k] = val;
    }
    return out as Out<S>;
  };
}

/** Validate `v` against `check`; the path names the message in errors ("decision.sid: …"). */
export function parse<T>(check: Check<T>, v: unknown, name: string): T {
  return check(v, name);
}
