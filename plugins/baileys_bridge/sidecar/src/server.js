#!/usr/bin/env node
// Guichê's Baileys sidecar: one process, many WhatsApp sessions, no state on disk.
// It listens on TCP (BRIDGE_HOST:BRIDGE_PORT, port 0 = any) for line-delimited JSON
// (./protocol.js). Every connection first sends `hello` with the shared secret
// (BRIDGE_SECRET). A `controller` connection starts sessions and receives their
// events; when it goes away its sessions stop (the plugin's lease is what says who
// may run a session, so a session never outlives its lease holder). Any authenticated
// connection may `send`; the `send_result` goes back to it. SIGTERM: sessions end,
// pending auth snapshots are flushed, the process exits 0.

import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

import { decode, encode, lineReader } from './protocol.js';
import { Session } from './session.js';

function makeLogger(level = process.env.BRIDGE_LOG_LEVEL || 'warn') {
  const order = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
  const min = order.indexOf(level);
  const logger = { level, child: () => logger };
  for (const name of order) {
    logger[name] = (obj, msg) => {
      if (order.indexOf(name) < min) return;
      const line = { level: name, msg: typeof obj === 'string' ? obj : msg, ...(typeof obj === 'object' && obj ? { detail: String(obj.err || obj.error || '') || undefined } : {}) };
      process.stderr.write(`${JSON.stringify(line)}\n`);
    };
  }
  return logger;
}

function digest(text) {
  return createHash('sha256').update(String(text)).digest();
}

export function createBridge({ secret, factory, logger = makeLogger() }) {
  if (!secret) throw new Error('BRIDGE_SECRET is required');
  const expected = digest(secret);
  const sessions = new Map(); // session id -> { session, owner }
  const connections = new Set();

  function write(conn, type, session, data) {
    if (!conn.destroyed) conn.write(encode(type, session, data));
  }

  function startSession(conn, id, data) {
    const existing = sessions.get(id);
    if (existing && existing.owner !== conn && !existing.owner.destroyed) {
      write(conn, 'error', id, { code: 'session_busy', message: 'another controller runs this session' });
      return;
    }
    if (existing) existing.session.stop();
    const session = new Session({
      id,
      auth: data.auth || null,
      options: data.options || {},
      factory,
      emit: (type, payload) => write(conn, type, id, payload),
      log: (msg, error) => logger.warn({ error }, `[${id}] ${msg}`),
    });
    sessions.set(id, { session, owner: conn });
    session.start();
    write(conn, 'started', id, {});
  }

  function stopSession(id, { logout = false } = {}) {
    const entry = sessions.get(id);
    if (!entry) return Promise.resolve(false);
    sessions.delete(id);
    if (logout) return entry.session.logout().then(() => true);
    entry.session.stop();
    return Promise.resolve(true);
  }

  async function handle(conn, frame) {
    const { type, session: id, data } = frame;
    if (!conn.authenticated) {
      const given = digest((data && data.secret) || '');
      if (type !== 'hello' || !timingSafeEqual(given, expected)) {
        write(conn, 'error', null, { code: 'unauthorized', message: 'hello with the shared secret first' });
        conn.end();
        return;
      }
      conn.authenticated = true;
      conn.role = data.role === 'controller' ? 'controller' : 'client';
      write(conn, 'hello', null, { role: conn.role, sessions: sessions.size, pid: process.pid });
      return;
    }
    const entry = id ? sessions.get(id) : null;
    switch (type) {
      case 'start':
        if (conn.role !== 'controller') write(conn, 'error', id, { code: 'forbidden', message: 'only a controller starts sessions' });
        else startSession(conn, id, data);
        break;
      case 'stop':
      case 'logout':
        if (entry && entry.owner === conn) {
          await stopSession(id, { logout: type === 'logout' });
          write(conn, 'stopped', id, { logout: type === 'logout' });
        } else {
          write(conn, 'stopped', id, { logout: false, unknown: true });
        }
        break;
      case 'pairing_code':
        if (!entry) write(conn, 'error', id, { code: 'unknown_session', message: 'no such session here' });
        else entry.session.requestPairingCode(data.phone).catch((error) => write(conn, 'error', id, { code: 'pairing_failed', message: String(error.message) }));
        break;
      case 'send': {
        const result = entry
          ? await entry.session.send(data)
          : { ok: false, error: { code: 'not_connected', message: 'no such session on this sidecar', retryable: true } };
        write(conn, 'send_result', id, { request_id: data.request_id, ...result });
        break;
      }
      case 'fake':
        if (entry && typeof entry.session.sock.fire === 'function') await entry.session.sock.fire(data.events || {});
        else write(conn, 'error', id, { code: 'not_fake', message: 'fake events need BRIDGE_FAKE_SOCKET=1' });
        break;
      case 'ping':
        write(conn, 'pong', id, { sessions: [...sessions.keys()] });
        break;
      default:
        logger.warn(`ignored frame type ${type}`);
    }
  }

  const server = net.createServer((conn) => {
    connections.add(conn);
    conn.setNoDelay(true);
    conn.on('data', lineReader((line) => {
      const frame = decode(line);
      if (frame.ignored) {
        logger.warn(`ignored a frame: ${frame.ignored}`);
        return;
      }
      handle(conn, frame).catch((error) => logger.error({ error }, 'frame failed'));
    }));
    conn.on('error', () => {});
    conn.on('close', () => {
      connections.delete(conn);
      for (const [id, entry] of sessions) {
        if (entry.owner === conn) stopSession(id);
      }
    });
  });

  async function close() {
    server.close();
    for (const id of [...sessions.keys()]) await stopSession(id); // flushes auth to owners
    for (const conn of connections) conn.end();
  }

  return { server, sessions, close };
}

async function main() {
  const logger = makeLogger();
  const factory = process.env.BRIDGE_FAKE_SOCKET === '1'
    ? (await import('./fake.js')).fakeFactory()
    : await (await import('./baileys.js')).baileysFactory(logger);
  const bridge = createBridge({ secret: process.env.BRIDGE_SECRET, factory, logger });
  const host = process.env.BRIDGE_HOST || '127.0.0.1';
  const port = Number(process.env.BRIDGE_PORT || 0);
  bridge.server.listen(port, host, () => {
    const address = bridge.server.address();
    process.stdout.write(`${JSON.stringify({ listening: { host: address.address, port: address.port } })}\n`);
  });
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await bridge.close();
    setTimeout(() => process.exit(0), 100).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  if (process.env.BRIDGE_EXIT_WITH_PARENT === '1') {
    // Started as a child: the parent holds our stdin; its end (even a SIGKILL of the
    // parent) means nobody will ever lease these sessions through us again.
    process.stdin.on('end', shutdown);
    process.stdin.on('error', shutdown);
    process.stdin.resume();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error) => {
    process.stderr.write(`${error && error.stack}\n`);
    process.exit(1);
  });
}
