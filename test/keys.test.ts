import { expect } from 'chai';
import fc from 'fast-check';
import { MysqlLock, PostgresLock } from '../src/index.js';
import { rememberedPerString } from '../src/keys.js';
import { expectThrowCode } from './support/expect.js';

describe('PostgreSQL key conversion (sqlalchemy-dlock compatible)', () => {
  const vectors: [string, bigint][] = [
    ['hello', 9022087748821825191n],
    ['migrations', 8001856219791164783n],
    ['', -5426141060434712860n],
    ['ключ', 2362285139686184012n],
  ];
  for (const [key, expected] of vectors) {
    it(`convert(${JSON.stringify(key)}) is ${expected}`, () => {
      expect(PostgresLock.convert(key)).to.equal(expected);
    });
  }

  it('bytes hash like the UTF-8 string they encode', () => {
    expect(PostgresLock.convert(new TextEncoder().encode('hello'))).to.equal(9022087748821825191n);
    expect(PostgresLock.convert(Buffer.from('ключ'))).to.equal(2362285139686184012n);
  });

  it('integers within int64 pass unchanged, as bigint', () => {
    expect(PostgresLock.convert(42)).to.equal(42n);
    expect(PostgresLock.convert(-(2n ** 63n))).to.equal(-(2n ** 63n));
    expect(PostgresLock.convert(2n ** 63n - 1n)).to.equal(2n ** 63n - 1n);
    expect(PostgresLock.ensureInt64(Number.MAX_SAFE_INTEGER)).to.equal(9007199254740991n);
  });

  it('integers outside int64 throw ERR_DLOCK_INVALID_KEY', () => {
    expectThrowCode(() => PostgresLock.convert(2n ** 63n), 'ERR_DLOCK_INVALID_KEY');
    expectThrowCode(() => PostgresLock.convert(-(2n ** 63n) - 1n), 'ERR_DLOCK_INVALID_KEY');
  });

  it('non-integer, unsafe or non-finite numbers throw ERR_DLOCK_INVALID_KEY', () => {
    for (const bad of [1.5, NaN, Infinity, -Infinity, 2 ** 60]) {
      expectThrowCode(() => PostgresLock.convert(bad), 'ERR_DLOCK_INVALID_KEY');
    }
  });

  it('a string with a lone surrogate throws ERR_DLOCK_INVALID_KEY instead of colliding', () => {
    expectThrowCode(() => PostgresLock.convert('a\uD800b'), 'ERR_DLOCK_INVALID_KEY');
  });

  it('other types throw ERR_DLOCK_INVALID_KEY', () => {
    for (const bad of [null, undefined, {}, [], true, Symbol('s')]) {
      expectThrowCode(() => PostgresLock.convert(bad as never), 'ERR_DLOCK_INVALID_KEY');
    }
  });
});

describe('MySQL lock names (sqlalchemy-dlock compatible)', () => {
  it('strings are used as they are', () => {
    expect(MysqlLock.convert('nightly-report')).to.equal('nightly-report');
    expect(MysqlLock.convert('it\'s "quoted"; --')).to.equal('it\'s "quoted"; --');
  });

  it('numbers and bigints become their decimal text', () => {
    expect(MysqlLock.convert(42)).to.equal('42');
    expect(MysqlLock.convert(-7n)).to.equal('-7');
    expect(MysqlLock.convert(1.5)).to.equal('1.5');
  });

  it('bytes are decoded as UTF-8; invalid UTF-8 throws ERR_DLOCK_INVALID_KEY', () => {
    expect(MysqlLock.convert(Buffer.from('ключ'))).to.equal('ключ');
    expectThrowCode(() => MysqlLock.convert(new Uint8Array([0xff, 0xfe])), 'ERR_DLOCK_INVALID_KEY');
  });

  it('a name of 64 code points is kept; 65 is hashed into 64 characters', () => {
    const name64 = 'é'.repeat(64);
    expect(MysqlLock.convert(name64)).to.equal(name64);
    const long = 'k'.repeat(65);
    const hashed = MysqlLock.convert(long);
    expect(Array.from(hashed)).to.have.length(64);
    expect(hashed).to.match(/^k{39}~[0-9a-f]{24}$/);
    expect(MysqlLock.convert(long)).to.equal(hashed);
    expect(MysqlLock.convert('k'.repeat(66))).to.not.equal(hashed);
  });

  it("a name over MariaDB's 192 UTF-8 bytes is hashed, though it has 64 code points or fewer", () => {
    const emoji48 = '😀'.repeat(48);
    expect(MysqlLock.convert(emoji48), '192 bytes fit').to.equal(emoji48);
    const over = `x${'😀'.repeat(56)}`;
    const hashed = MysqlLock.convert(over);
    expect(hashed).to.equal(`x${'😀'.repeat(38)}~${hashed.slice(-24)}`);
    expect(Buffer.byteLength(hashed)).to.be.at.most(192);
    expect(MysqlLock.convert('😀'.repeat(49))).to.not.equal(MysqlLock.convert('😀'.repeat(50)));
  });

  it('a name with NUL is hashed, so that names MariaDB would cut at NUL stay apart', () => {
    const names = ['a\0b', 'a\0bz', 'a\0'].map((key) => MysqlLock.convert(key));
    expect(MysqlLock.convert('a')).to.equal('a');
    expect(new Set([...names, 'a']).size).to.equal(4);
    expect(names[0]).to.match(/^a\uFFFDb~[0-9a-f]{24}$/);
    for (const name of names) expect(name).to.not.include('\0');
  });

  it('every name fits both servers, is stable, and is the key itself when that fits', () => {
    const hashedShape = /~[0-9a-f]{24}$/;
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 120 }), (key) => {
        fc.pre(key.length > 0);
        const name = MysqlLock.convert(key);
        expect(Array.from(name).length).to.be.at.most(64);
        expect(Buffer.byteLength(name)).to.be.at.most(192);
        expect(name).to.not.include('\0');
        expect(MysqlLock.convert(key)).to.equal(name);
        const fits =
          Array.from(key).length <= 64 && Buffer.byteLength(key) <= 192 && !key.includes('\0');
        if (fits) expect(name).to.equal(key);
        else expect(name).to.match(hashedShape);
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }),
        (a, b) => {
          fc.pre(a !== b);
          expect(MysqlLock.convert(a)).to.not.equal(MysqlLock.convert(b));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a 10 000-character name is hashed deterministically', () => {
    const name = 'x'.repeat(10_000);
    expect(Array.from(MysqlLock.convert(name))).to.have.length(64);
    expect(MysqlLock.convert(name)).to.equal(MysqlLock.convert(name));
  });

  it('an empty name, NaN, Infinity or other types throw ERR_DLOCK_INVALID_KEY', () => {
    for (const bad of ['', NaN, Infinity, null, {}, true]) {
      expectThrowCode(() => MysqlLock.convert(bad as never), 'ERR_DLOCK_INVALID_KEY');
    }
  });
});

describe('string keys remembered per string', () => {
  it('converts each string once while it is among the last `size`, and forgets the oldest', () => {
    const calls: string[] = [];
    const convert = rememberedPerString((key) => {
      calls.push(key);
      return key.length;
    }, 2);
    expect([convert('a'), convert('bb'), convert('a'), convert('bb')]).to.deep.equal([1, 2, 1, 2]);
    expect(calls).to.deep.equal(['a', 'bb']);
    convert('ccc'); // 'a' goes
    convert('a');
    expect(calls).to.deep.equal(['a', 'bb', 'ccc', 'a']);
  });

  it('remembers no error, and gives the same keys as before on both dialects', () => {
    let fail = true;
    const convert = rememberedPerString((key) => {
      if (fail) throw new Error('no');
      return key;
    });
    expect(() => convert('k')).to.throw('no');
    fail = false;
    expect(convert('k')).to.equal('k');
    for (let round = 0; round < 2; round += 1) {
      expect(PostgresLock.convert('hello')).to.equal(9022087748821825191n);
      expect(MysqlLock.convert('x'.repeat(65))).to.match(/^x{39}~[0-9a-f]{24}$/);
    }
    expectThrowCode(() => MysqlLock.convert(''), 'ERR_DLOCK_INVALID_KEY');
    expectThrowCode(() => MysqlLock.convert(''), 'ERR_DLOCK_INVALID_KEY');
  });
});
