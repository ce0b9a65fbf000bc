import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { memoryAuthState } from '../src/auth.js';
import { decode, encode, lineReader, toWire } from '../src/protocol.js';

const FIXTURES = new URL('../../../../tests/fixtures/bridge/', import.meta.url);

test('fixtures decode, Buffers revive and encode back to the same JSON', () => {
  const raw = readFileSync(new URL('bridge_message_image.json', FIXTURES), 'utf8');
  const frame = decode(raw.replace(/\n/g, ''));
  const key = frame.data.message.message.imageMessage.mediaKey;
  assert.ok(Buffer.isBuffer(key));
  const again = JSON.parse(encode(frame.type, frame.session, frame.data));
  assert.deepEqual(again, JSON.parse(raw));
});

test('Longs become numbers, Uint8Arrays BufferJSON', () => {
  const long = { low: 1741961100, high: 0, unsigned: true, toNumber: () => 1741961100 };
  assert.deepEqual(toWire({ t: long, b: new Uint8Array([1, 2]) }), { t: 1741961100, b: { type: 'Buffer', data: 'AQI=' } });
});

test('unknown versions and garbage are ignored, not thrown', () => {
  assert.match(decode('{"v": 2, "type": "message", "data": {}}').ignored, /version 2/);
  assert.equal(decode('not json').ignored, 'not JSON');
  assert.equal(decode('[1]').ignored, 'not a frame');
});

test('lines are split across chunks', () => {
  const seen = [];
  const feed = lineReader((line) => seen.push(line));
  feed(Buffer.from('{"a":1}\n{"b"'));
  feed(Buffer.from(':2}\n'));
  assert.deepEqual(seen, ['{"a":1}', '{"b":2}']);
});

test('auth state round trip: keys set, deleted, snapshot JSON restores them', async () => {
  let changes = 0;
  const first = memoryAuthState(null, { initCreds: () => ({ me: null, key: Buffer.from('k') }), onChange: () => { changes += 1; } });
  await first.state.keys.set({ session: { a: Buffer.from('A'), b: Buffer.from('B') }, 'pre-key': { 1: { public: Buffer.from('p') } } });
  await first.state.keys.set({ session: { b: null } });
  assert.equal(changes, 2);
  const wire = decode(encode('auth', 's', first.snapshot()));
  const second = memoryAuthState(wire.data, { initCreds: () => assert.fail('creds must be restored'), onChange: () => {} });
  assert.deepEqual(await second.state.keys.get('session', ['a', 'b']), { a: Buffer.from('A') });
  assert.deepEqual(second.state.creds.key, Buffer.from('k'));
  assert.deepEqual((await second.state.keys.get('pre-key', ['1']))['1'].public, Buffer.from('p'));
});
