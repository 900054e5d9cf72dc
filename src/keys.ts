import blakejs from 'blakejs';
import { InvalidKeyError } from './errors.js';

/**
 * What a lock key may be. PostgreSQL turns it into a signed 64-bit integer, MySQL / MariaDB
 * into a lock name; both conversions match sqlalchemy-dlock, so that services written in
 * either language exclude each other on the same key.
 */
export type LockKey = string | number | bigint | Uint8Array;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const utf8Encoder = new TextEncoder();
const strictUtf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Throws unless `value` is an integer in PostgreSQL's signed int64 range; returns it as a bigint. */
export function ensureInt64(value: unknown): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new InvalidKeyError(
        `Expected an integer key, got the number ${value}: pass an integer no larger than ` +
          `Number.MAX_SAFE_INTEGER, or a bigint for the whole int64 range.`,
      );
    }
    return BigInt(value);
  }
  if (typeof value !== 'bigint') {
    throw new InvalidKeyError(`Expected an int64 as a number or bigint, got ${describe(value)}.`);
  }
  if (value < INT64_MIN || value > INT64_MAX) {
    throw new InvalidKeyError(
      `The key ${value} is outside PostgreSQL's signed int64 range ` +
        `[${INT64_MIN}, ${INT64_MAX}]: use a smaller integer, or a string key (it is hashed).`,
    );
  }
  return value;
}

/** BLAKE2b with an 8-byte digest, read as a signed little-endian int64 (as sqlalchemy-dlock). */
export function hashToInt64(bytes: Uint8Array): bigint {
  const digest = blakejs.blake2b(bytes, undefined, 8);
  return new DataView(digest.buffer, digest.byteOffset, 8).getBigInt64(0, true);
}

/** UTF-8 bytes of a string; lone surrogates would silently become U+FFFD, so they are refused. */
export function utf8(text: string): Uint8Array {
  if (!text.isWellFormed()) {
    throw new InvalidKeyError(
      'The key string contains a lone UTF-16 surrogate, which has no UTF-8 form: ' +
        'pass a well-formed string (see String.prototype.toWellFormed).',
    );
  }
  return utf8Encoder.encode(text);
}

/** Decodes bytes as strict UTF-8, as sqlalchemy-dlock does for MySQL names. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return strictUtf8Decoder.decode(bytes);
  } catch (cause) {
    throw new InvalidKeyError('The key bytes are not valid UTF-8: pass a string or UTF-8 bytes.', {
      cause,
    });
  }
}

/** Hex of BLAKE2b with a digest of `bytes` bytes. */
export function hashHex(data: Uint8Array, bytes: number): string {
  return Buffer.from(blakejs.blake2b(data, undefined, bytes)).toString('hex');
}

export function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

/** A short description of a value for error messages, never its whole content. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name;
    return name && name !== 'Object' ? `an instance of ${name}` : 'a plain object';
  }
  if (typeof value === 'number') return `the number ${value}`;
  return `a ${typeof value}`;
}

/**
 * `convert` for string keys, remembered for the last `size` distinct strings: a service locks
 * the same few keys over and over, and hashing one on every `createLock` is measurable CPU.
 * When full, the oldest entry goes; errors are not remembered.
 */
export function rememberedPerString<T>(
  convert: (key: string) => T,
  size = 4096,
): (key: string) => T {
  const memo = new Map<string, T>();
  return (key) => {
    const known = memo.get(key);
    if (known !== undefined) return known;
    const value = convert(key);
    if (memo.size >= size) memo.delete(memo.keys().next().value as string);
    memo.set(key, value);
    return value;
  };
}
