import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { test } from 'node:test';

import { fakeFactory } from '../src/fake.js';
import { decode, encode, lineReader } from '../src/protocol.js';
import { createBridge } from '../src/server.js';

const SECRET = 'test-secret';
const FAST = { pace_ms: 0, jitter_ms: 0, auth_debounce_ms: 5, reconnect_min_ms: 5 };

async function listen(bridge) {
  await new Promise((resolve) => bridge.server.listen(0, '127.0.0.1', resolve));
  return bridge.server.address().port;
}

function connect(port, { secret = SECRET, role = 'controller' } = {}) {
  const frames = [];
  const waiters = [];
  const sock = net.connect(port, '127.0.0.1');
  sock.on('data', lineReader((line) => {
    const frame = decode(line);
    frames.push(frame);
    for (const waiter of [...waiters]) {
      if (waiter.match(frame)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(frame);
      }
    }
  }));
  const client = {
    frames,
    sock,
    send: (type, session, data) => sock.write(encode(type, session, data)),
    next(match, timeout = 2000) {
      const found = frames.find(match);
      if (found) {
        frames.splice(frames.indexOf(found), 1);
        return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out waiting for a frame')), timeout);
        waiters.push({ match, resolve: (frame) => { clearTimeout(timer); frames.splice(frames.indexOf(frame), 1); resolve(frame); } });
      });
    },
  };
  client.send('hello', null, { secret, role });
  return client;
}

const is = (type, session) => (frame) => frame.type === type && (session === undefined || frame.session === session);

test('a wrong secret is refused and the connection closed', async () => {
  const bridge = createBridge({ secret: SECRET, factory: fakeFactory() });
  const port = await listen(bridge);
  const client = connect(port, { secret: 'wrong' });
  const refused = await client.next(is('error'));
  assert.equal(refused.data.code, 'unauthorized');
  await new Promise((resolve) => client.sock.on('close', resolve));
  await bridge.close();
});

test('many sessions: QR, open, inbound and acks reach their controller, tagged by session', async () => {
  const factory = fakeFactory();
  const bridge = createBridge({ secret: SECRET, factory });
  const port = await listen(bridge);
  const client = connect(port);
  await client.next(is('hello'));
  const ids = Array.from({ length: 20 }, (_, n) => `s${n}`);
  for (const id of ids) client.send('start', id, { options: FAST });
  for (const id of ids) await client.next(is('started', id));
  assert.equal(factory.sockets.length, 20);
  const sock = factory.sockets[7];
  await sock.fire({ 'connection.update': { qr: '2@abc' } });
  const qr = await client.next(is('qr', 's7'));
  assert.deepEqual([qr.data.qr, qr.data.attempt], ['2@abc', 1]);
  await sock.fire({ 'connection.update': { connection: 'open' } });
  assert.equal((await client.next(is('connection', 's7'))).data.state, 'open');
  await sock.fire({ 'messages.upsert': { type: 'notify', messages: [{ key: { remoteJid: '5511987654321@s.whatsapp.net', id: 'IN1' }, message: { conversation: 'oi' }, messageTimestamp: 1 }] } });
  const message = await client.next(is('message', 's7'));
  assert.equal(message.data.upsert_type, 'notify');
  assert.equal(message.data.message.message.conversation, 'oi');
  await sock.fire({ 'messages.update': [{ key: { id: 'OUT1', fromMe: true }, update: { status: 3 } }] });
  const ack = await client.next(is('ack', 's7'));
  assert.deepEqual([ack.data.status, ack.data.status_code], ['DELIVERY_ACK', 3]);
  await bridge.close();
});

test('inbound media is downloaded, hashed and attached', async () => {
  const factory = fakeFactory();
  const bridge = createBridge({ secret: SECRET, factory });
  const client = connect(await listen(bridge));
  client.send('start', 'm', { options: FAST });
  await client.next(is('started', 'm'));
  await factory.sockets[0].fire({ 'messages.upsert': { type: 'notify', messages: [{ key: { remoteJid: '1@s.whatsapp.net', id: 'IMG' }, message: { imageMessage: { mimetype: 'image/jpeg' } }, _media_base64: Buffer.from('jpeg').toString('base64') }] } });
  const message = await client.next(is('message', 'm'));
  assert.equal(message.data.media.base64, Buffer.from('jpeg').toString('base64'));
  assert.equal(message.data.media.size, 4);
  assert.equal(message.data.message._media_base64, undefined);
  await bridge.close();
});

test('auth state round trip: a restarted session gets its creds and keys back', async () => {
  const factory = fakeFactory();
  const bridge = createBridge({ secret: SECRET, factory });
  const client = connect(await listen(bridge));
  client.send('start', 'a', { options: FAST });
  await client.next(is('started', 'a'));
  const fresh = await client.next(is('auth', 'a'));
  assert.ok(Buffer.isBuffer(fresh.data.creds.noiseKey.private));
  await factory.sockets[0].state.keys.set({ session: { peer: Buffer.from('signal') } });
  const saved = await client.next(is('auth', 'a'));
  assert.deepEqual(saved.data.keys.session.peer, Buffer.from('signal'));
  client.send('stop', 'a', {});
  await client.next(is('stopped', 'a'));
  client.send('start', 'a', { auth: saved.data, options: FAST });
  await client.next(is('started', 'a'));
  const restored = factory.sockets[1].state;
  assert.deepEqual(await restored.keys.get('session', ['peer']), { peer: Buffer.from('signal') });
  assert.deepEqual(restored.creds.noiseKey.private, Buffer.from('fake-private'));
  await bridge.close();
});

test('send mapping: ok with key, not_on_whatsapp permanent, not_connected retryable, request ids never sent twice', async () => {
  const factory = fakeFactory();
  const bridge = createBridge({ secret: SECRET, factory });
  const port = await listen(bridge);
  const controller = connect(port);
  controller.send('start', 'x', { options: FAST });
  await controller.next(is('started', 'x'));
  const sender = connect(port, { role: 'client' });
  await sender.next(is('hello'));
  sender.send('send', 'x', { request_id: 'r0', to: '5511987654321@s.whatsapp.net', content: { text: 'cedo' } });
  const early = await sender.next(is('send_result', 'x'));
  assert.deepEqual([early.data.ok, early.data.error.code, early.data.error.retryable], [false, 'not_connected', true]);
  const sock = factory.sockets[0];
  await sock.fire({ 'connection.update': { connection: 'open' } });
  const quoted = { key: { remoteJid: '5511987654321@s.whatsapp.net', fromMe: false, id: 'Q1' } };
  sender.send('send', 'x', { request_id: 'r1', to: '5511987654321@s.whatsapp.net', content: { text: 'oi' }, quoted });
  sender.send('send', 'x', { request_id: 'r1', to: '5511987654321@s.whatsapp.net', content: { text: 'oi' }, quoted });
  const first = await sender.next(is('send_result', 'x'));
  const second = await sender.next(is('send_result', 'x'));
  assert.equal(first.data.ok, true);
  assert.equal(second.data.key.id, first.data.key.id);
  assert.equal(sock.sent.length, 1);
  assert.equal(sock.sent[0].options.quoted.key.id, 'Q1');
  sock.unknownNumbers.add('5511900001111@s.whatsapp.net');
  sender.send('send', 'x', { request_id: 'r2', to: '5511900001111@s.whatsapp.net', content: { text: 'oi' } });
  const unknown = await sender.next(is('send_result', 'x'));
  assert.deepEqual([unknown.data.error.code, unknown.data.error.retryable], ['not_on_whatsapp', false]);
  sender.send('send', 'x', { request_id: 'r3', to: '5511987654321@s.whatsapp.net', content: { image: Buffer.from('png'), caption: 'c' } });
  await sender.next(is('send_result', 'x'));
  assert.ok(Buffer.isBuffer(sock.sent[1].content.image));
  assert.equal(controller.frames.filter((f) => f.type === 'send_result').length, 0);
  await bridge.close();
});

test('the paced queue spaces sends of one session', async () => {
  const factory = fakeFactory();
  const bridge = createBridge({ secret: SECRET, factory });
  const client = connect(await listen(bridge));
  client.send('start', 'p', { options: { ...FAST, pace_ms: 150, check_numbers: false } });
  await client.next(is('started', 'p'));
  await factory.sockets[0].fire({ 'connection.update': { connection: 'open' } });
  const started = Date.now();
  for (const n of [1, 2, 3]) client.send('send', 'p', { request_id: `p${n}`, to: '1@s.whatsapp.net', content: { text: `${n}` } });
  for (let n = 0; n < 3; n += 1) await client.next(is('send_result', 'p'));
  assert.ok(Date.now() - started >= 300, 'three sends take two gaps');
  await bridge.close();
});

test('close codes: 515 reconnects, 401 stops for a new QR, the watchdog reconnects a silent open socket', async () => {
  const factory = fakeFactory();
  const bridge = createBridge({ secret: SECRET, factory });
  const client = connect(await listen(bridge));
  client.send('start', 'c', { options: { ...FAST, watchdog_ms: 200 } });
  await client.next(is('started', 'c'));
  const boom = (code) => Object.assign(new Error('closed'), { output: { statusCode: code } });
  await factory.sockets[0].fire({ 'connection.update': { connection: 'close', lastDisconnect: { error: boom(515) } } });
  const closed = await client.next(is('connection', 'c'));
  assert.deepEqual([closed.data.last_disconnect.reason, closed.data.will_reconnect], ['restartRequired', true]);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(factory.sockets.length, 2);
  await factory.sockets[1].fire({ 'connection.update': { connection: 'open' } });
  await client.next(is('connection', 'c'));
  const silent = await client.next((f) => f.type === 'connection' && f.data.last_disconnect && f.data.last_disconnect.reason === 'watchdog', 3000);
  assert.equal(silent.data.state, 'connecting');
  assert.equal(factory.sockets.length, 3);
  assert.equal(factory.sockets[1].ended, true);
  await factory.sockets[2].fire({ 'connection.update': { connection: 'close', lastDisconnect: { error: boom(401) } } });
  const out = await client.next((f) => f.type === 'connection' && f.data.state === 'close');
  assert.deepEqual([out.data.last_disconnect.reason, out.data.will_reconnect], ['loggedOut', false]);
  assert.equal((await client.next(is('session_stopped', 'c'))).data.reason, 'logged_out');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(factory.sockets.length, 3);
  await bridge.close();
});

test('a controller that goes away stops its sessions; the process exits 0 on SIGTERM', async () => {
  const child = spawn(process.execPath, [new URL('../src/server.js', import.meta.url).pathname], {
    env: { ...process.env, BRIDGE_SECRET: SECRET, BRIDGE_FAKE_SOCKET: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve) => child.stdout.once('data', (chunk) => resolve(JSON.parse(chunk).listening.port)));
  const first = connect(port);
  first.send('start', 'k', { options: FAST });
  await first.next(is('started', 'k'));
  first.sock.destroy();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const second = connect(port);
  second.send('ping', null, {});
  assert.deepEqual((await second.next(is('pong'))).data.sessions, []);
  second.send('start', 'k', { options: FAST });
  await second.next(is('started', 'k'));
  child.kill('SIGTERM');
  const [code] = await new Promise((resolve) => child.on('exit', (...args) => resolve(args)));
  assert.equal(code, 0);
  assert.ok(second.frames.some((f) => f.type === 'auth' && f.session === 'k'), 'auth flushed before exit');
});

test('a child sidecar exits when its parent goes away (stdin closed)', async () => {
  const child = spawn(process.execPath, [new URL('../src/server.js', import.meta.url).pathname], {
    env: { ...process.env, BRIDGE_SECRET: SECRET, BRIDGE_FAKE_SOCKET: '1', BRIDGE_EXIT_WITH_PARENT: '1' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  child.stdin.end();
  const [code] = await new Promise((resolve) => child.on('exit', (...args) => resolve(args)));
  assert.equal(code, 0);
});
