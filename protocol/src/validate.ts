/**
 * The schema checker for messages from outside (Socket.IO events, JSON files, handshakes),
 * built on valibot (small, tree-shaken into the app, no eval so the app's CSP holds).
 * What is ours is the bounds: every string has a length limit and no control characters,
 * every integer a range, every array a maximum length checked before its items, and an
 * object carries exactly the fields its schema names (unknown fields are refused).
 */
import * as v from 'valibot';
import { QrauthError } from './errors.js';

/** A schema whose output is T: check a value with parse(). */
export type Check<T> = v.GenericSchema<unknown, T>;

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const ANY = /(?:)/;

export function str(opts: { max: number; min?: number; pattern?: RegExp }): Check<string> {
  const min = opts.min ?? 0;
  return v.pipe(
    v.string('expected a string'),
    v.maxLength(opts.max, `longer than ${opts.max} characters`),
    v.minLength(min, `shorter than ${min} characters`),
    v.regex(opts.pattern ?? ANY, 'has an invalid format'),
    v.check((s) => !CONTROL.test(s), 'contains control characters'),
  );
}

export function int(opts: { min: number; max: number }): Check<number> {
  const range = `out of range ${opts.min}..${opts.max}`;
  return v.pipe(
    v.number('expected an integer'),
    v.safeInteger('expected an integer'),
    v.minValue(opts.min, range),
    v.maxValue(opts.max, range),
  );
}

export function oneOf<const T extends readonly string[]>(values: T): Check<T[number]> {
  return v.picklist(values, `expected one of ${values.join(', ')}`) as Check<T[number]>;
}

export function literal<const T extends string | number | boolean>(value: T): Check<T> {
  return v.literal(value, `expected ${JSON.stringify(value)}`) as Check<T>;
}

export function bool(): Check<boolean> {
  return v.boolean('expected true or false');
}

export function optional<T>(check: Check<T>): v.OptionalSchema<Check<T>, undefined> {
  return v.optional(check);
}

export function nullable<T>(check: Check<T>): Check<T | null> {
  return v.nullable(check);
}

/** At most maxItems, counted before any item is checked. */
export function arrayOf<T>(check: Check<T>, maxItems: number): Check<T[]> {
  // Array.isArray, not v.array(v.unknown()): that walks and copies every item before the count
  // (a 2**27-long sparse array ended the process; security review of this change).
  return v.pipe(v.custom<unknown[]>(Array.isArray, 'expected an array'), v.maxLength(maxItems, `more than ${maxItems} items`), v.array(check));
}

type Shape = Record<string, Check<unknown> | v.OptionalSchema<Check<unknown>, undefined>>;

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

const objectMessage = (issue: v.StrictObjectIssue): string =>
  issue.expected === 'never' ? `unexpected field "${String(issue.input).slice(0, 40)}"` : issue.expected === 'Object' ? 'expected an object' : 'is missing';

/** Exactly the fields of `shape`: an array, or a field the shape does not name, is refused. */
export function object<S extends Shape>(shape: S): Check<v.InferOutput<v.StrictObjectSchema<S, undefined>>> {
  // valibot's objects accept arrays; ours do not, so the type is checked first.
  return v.pipe(v.custom<v.InferInput<v.StrictObjectSchema<S, undefined>>>(isRecord, 'expected an object'), v.strictObject(shape, objectMessage));
}

/** Where an issue is, as "name.field[2]"; the name of an unexpected field is in the message instead. */
function pathOf(issue: v.BaseIssue<unknown>): string {
  let out = '';
  for (const item of issue.path ?? []) {
    if (item.type === 'array') out += `[${String(item.key)}]`;
    else if (item.type === 'object' && !(item.origin === 'key' && issue.expected === 'never')) out += `.${String(item.key)}`;
  }
  return out;
}

/** Validate `value` against `check`; the name begins the path in errors ("decision.sid: …"). */
export function parse<T>(check: Check<T>, value: unknown, name: string): T {
  let r: v.SafeParseResult<Check<T>>;
  try {
    r = v.safeParse(check, value, { abortEarly: true, abortPipeEarly: true });
  } catch {
    // Only a value that is not JSON gets here (a getter that throws): refused like any other.
    throw new QrauthError('QRA_ERR_INVALID_INPUT', `${name}: could not be read`);
  }
  if (r.success) return r.output;
  const issue = r.issues[0];
  throw new QrauthError('QRA_ERR_INVALID_INPUT', `${name}${pathOf(issue)}: ${issue.message}`);
}

/**
 * A rule a schema cannot say, on a value that passed `check`: `problem` names what is wrong
 * (with the field it is about, when it is one field of an object), or returns null.
 */
export function refine<T>(check: Check<T>, problem: (value: T) => string | { field: string; problem: string } | null): Check<T> {
  return v.pipe(
    check,
    v.rawCheck<T>(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const p = problem(dataset.value);
      if (p === null) return;
      if (typeof p === 'string') return addIssue({ message: p });
      const input = dataset.value as Record<string, unknown>;
      addIssue({ message: p.problem, path: [{ type: 'object', origin: 'value', input, key: p.field, value: input[p.field] }] });
    }),
  );
}

/** The schema that `pick` chooses by looking at the input (an answer that is an error or not). */
export function byInput<T>(pick: (input: unknown) => Check<T>): Check<T> {
  return v.lazy(pick);
}

/** Anything at all: for a field whose content the receiver checks itself. */
export const anything: Check<unknown> = v.unknown();

/** A type test of our own as a schema, for a value no combination above describes. */
export function custom<T>(test: (x: unknown) => x is T, what: string): Check<T> {
  return v.custom<T>(test, what);
}

/** The type a schema's check gives. */
export type Parsed<C> = C extends Check<infer T> ? T : never;
