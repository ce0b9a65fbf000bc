// One WhatsApp session (one Guichê channel): a Baileys socket, its in-memory auth state,
// reconnects with backoff, a watchdog for sockets that say "open" but go silent, and a
// paced send queue. Everything it learns leaves through `emit(type, data)`.

import { memoryAuthState } from './auth.js';

export const STATUS_NAMES = ['ERROR', 'PENDING', 'SERVER_ACK', 'DELIVERY_ACK', 'READ', 'PLAYED'];
export const REASONS = {
  401: 'loggedOut', 403: 'forbidden', 408: 'timedOut', 411: 'multideviceMismatch',
  428: 'connectionClosed', 440: 'connectionReplaced', 500: 'badSession',
  503: 'unavailableService', 515: 'restartRequired',
};
// After these only the operator can help (new QR, unbanned number, the other device).
const FINAL_CODES = new Set([401, 403, 440]);
const MEDIA_KINDS = ['imageMessage', 'videoMessage', 'ptvMessage', 'audioMessage', 'documentMessage', 'stickerMessage'];
const WRAPPERS = ['ephemeralMessage', 'viewOnceMessage', 'viewOnceMessageV2', 'viewOnceMessageV2Extension', 'documentWithCaptionMessage'];

export const DEFAULT_OPTIONS = {
  pace_ms: 1500, // minimum gap between two sends of one number
  jitter_ms: 1500, // plus up to this much, at random
  watchdog_ms: 10 * 60 * 1000, // "open" but no event for this long: reconnect
  reconnect_min_ms: 1000,
  reconnect_max_ms: 60000,
  send_timeout_ms: 60000,
  check_numbers: true, // ask WhatsApp whether a phone JID exists before sending
  max_media_bytes: 16 * 1024 * 1024,
  sync_history: false,
  pairing_phone: null,
  auth_debounce_ms: 200,
};

function mediaOf(message) {
  let content = message && message.message;
  for (let i = 0; i < 4 && content; i += 1) {
    const wrapper = WRAPPERS.find((name) => content[name] && content[name].message);
    if (!wrapper) break;
    content = content[wrapper].message;
  }
  if (!content) return null;
  const kind = MEDIA_KINDS.find((name) => content[name]);
  return kind ? { kind, content: content[kind] } : null;
}

function errorCode(error) {
  return error && error.output && error.output.statusCode;
}

export class Session {
  constructor({ id, auth, options, factory, emit, log = () => {} }) {
    this.id = id;
    this.options = { ...DEFAULT_OPTIONS, ...(options || {}) };
    this.factory = factory;
    this.emit = emit;
    this.log = log;
    this.state = 'connecting';
    this.generation = 0;
    this.sock = null;
    this.stopped = false;
    this.backoff = this.options.reconnect_min_ms;
    this.qrAttempt = 0;
    this.pairingRequested = false;
    this.lastEventAt = Date.now();
    this.sendChain = Promise.resolve();
    this.nextSendAt = 0;
    this.results = new Map(); // request_id -> Promise of its result (never send twice)
    this.authTimer = null;
    this.auth = memoryAuthState(auth, {
      initCreds: factory.initCreds,
      fixKey: factory.fixKey,
      onChange: () => this.scheduleAuth(),
    });
  }

  start() {
    this.connect();
    const tick = Math.max(50, Math.min(30000, Math.floor(this.options.watchdog_ms / 4)));
    this.watchdog = setInterval(() => this.checkWatchdog(), tick);
    this.scheduleAuth(); // a new session's fresh creds reach the plugin at once
  }

  connect() {
    this.generation += 1;
    const generation = this.generation;
    this.state = 'connecting';
    this.lastEventAt = Date.now();
    const sock = this.factory.makeSocket({ sessionId: this.id, state: this.auth.state, options: this.options });
    this.sock = sock;
    sock.ev.process(async (events) => {
      if (generation !== this.generation || this.stopped) return;
      this.lastEventAt = Date.now();
      try {
        await this.onEvents(events, sock);
      } catch (error) {
        this.log('event handling failed', error);
      }
    });
  }

  async onEvents(events, sock) {
    if (events['creds.update']) this.auth.saveCreds();
    if (events['connection.update']) this.onConnection(events['connection.update'], sock);
    if (events['messages.upsert']) {
      const { messages, type } = events['messages.upsert'];
      for (const message of messages || []) await this.onMessage(message, type, sock);
    }
    if (events['messaging-history.set']) {
      const { messages, isLatest } = events['messaging-history.set'];
      const all = messages || [];
      for (let at = 0; at < all.length; at += 200) {
        this.emit('history', { messages: all.slice(at, at + 200), is_latest: Boolean(isLatest) && at + 200 >= all.length });
      }
    }
    if (events['messages.update']) {
      for (const { key, update } of events['messages.update']) {
        if (!key || !key.fromMe || !update || typeof update.status !== 'number') continue;
        this.emit('ack', {
          key, status: STATUS_NAMES[update.status] || String(update.status), status_code: update.status,
          timestamp: Math.floor(Date.now() / 1000),
        });
      }
    }
  }

  onConnection(update, sock) {
    if (update.qr) {
      this.qrAttempt += 1;
      this.emit('qr', { qr: update.qr, attempt: this.qrAttempt, expires_in_s: 60 });
      if (this.options.pairing_phone && !this.pairingRequested) {
        this.pairingRequested = true;
        this.requestPairingCode(this.options.pairing_phone).catch((error) => this.log('pairing code failed', error));
      }
    }
    if (update.connection === 'open') {
      this.state = 'open';
      this.backoff = this.options.reconnect_min_ms;
      this.qrAttempt = 0;
      this.emit('connection', { state: 'open', me: sock.user || null, last_disconnect: null });
    } else if (update.connection === 'connecting') {
      this.state = 'connecting';
      this.emit('connection', { state: 'connecting', me: null, last_disconnect: null });
    } else if (update.connection === 'close') {
      const error = update.lastDisconnect && update.lastDisconnect.error;
      const code = errorCode(error) || null;
      const final = FINAL_CODES.has(code);
      this.state = 'close';
      this.emit('connection', {
        state: 'close', me: null, will_reconnect: !final && !this.stopped,
        last_disconnect: { status_code: code, reason: REASONS[code] || 'unknown', message: (error && error.message) || '' },
      });
      if (final) {
        this.stop();
        if (code === 401) this.emit('session_stopped', { reason: 'logged_out' });
        else this.emit('session_stopped', { reason: REASONS[code] });
      } else if (!this.stopped) {
        const wait = code === 515 ? 0 : this.backoff;
        this.backoff = Math.min(this.backoff * 2, this.options.reconnect_max_ms);
        this.reconnectTimer = setTimeout(() => { if (!this.stopped) this.connect(); }, wait);
      }
    }
  }

  async onMessage(message, type, sock) {
    const data = { upsert_type: type === 'notify' ? 'notify' : 'append', message };
    const media = type === 'notify' ? mediaOf(message) : null;
    if (media) {
      try {
        const bytes = await this.factory.downloadMedia(sock, message);
        if (bytes.length > this.options.max_media_bytes) {
          data.media_error = { code: 'too_large', message: `${bytes.length} bytes` };
        } else {
          const { createHash } = await import('node:crypto');
          data.media = {
            mimetype: media.content.mimetype || null,
            file_name: media.content.fileName || null,
            size: bytes.length,
            sha256: createHash('sha256').update(bytes).digest('hex'),
            base64: bytes.toString('base64'),
          };
        }
      } catch (error) {
        data.media_error = { code: 'media_download_failed', message: String(error && error.message) };
      }
    }
    this.emit('message', data);
  }

  checkWatchdog() {
    if (this.stopped || this.state !== 'open') return;
    const silent = Date.now() - this.lastEventAt;
    if (silent < this.options.watchdog_ms) return;
    this.log(`watchdog: no event for ${silent} ms, reconnecting`);
    this.emit('connection', {
      state: 'connecting', me: null,
      last_disconnect: { status_code: null, reason: 'watchdog', message: `no event for ${Math.round(silent / 1000)} s while open` },
    });
    const old = this.sock;
    this.generation += 1; // ignore whatever the old socket still says
    try { old.end(new Error('watchdog')); } catch { /* already gone */ }
    this.connect();
  }

  scheduleAuth() {
    if (this.authTimer) return;
    this.authTimer = setTimeout(() => this.flushAuth(), this.options.auth_debounce_ms);
  }

  flushAuth() {
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = null;
    this.emit('auth', this.auth.snapshot());
  }

  async requestPairingCode(phone) {
    const code = await this.sock.requestPairingCode(String(phone).replace(/\D/g, ''));
    this.emit('pairing_code', { code, phone: String(phone) });
    return code;
  }

  send(data) {
    const id = data.request_id;
    if (id && this.results.has(id)) return this.results.get(id);
    const result = new Promise((resolve) => {
      this.sendChain = this.sendChain.then(() => this.sendNow(data)).then(resolve, (error) => resolve(this.failure('internal', String(error), true)));
    });
    if (id) {
      this.results.set(id, result);
      if (this.results.size > 5000) this.results.delete(this.results.keys().next().value);
    }
    return result;
  }

  failure(code, message, retryable) {
    return { ok: false, error: { code, message, retryable } };
  }

  async sendNow({ to, content, quoted }) {
    if (this.stopped || this.state !== 'open') return this.failure('not_connected', 'the session is not connected', true);
    const wait = this.nextSendAt - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    this.nextSendAt = Date.now() + this.options.pace_ms + Math.random() * this.options.jitter_ms;
    const sock = this.sock;
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(this.failure('timeout', 'WhatsApp did not answer in time', true)), this.options.send_timeout_ms);
    });
    const attempt = (async () => {
      try {
        if (this.options.check_numbers && /@s\.whatsapp\.net$/.test(to)) {
          const [found] = (await sock.onWhatsApp(to)) || [];
          if (!found || !found.exists) {
            return this.failure('not_on_whatsapp', `${to.split('@')[0]} is not registered on WhatsApp`, false);
          }
        }
        const options = {};
        if (quoted && quoted.key) options.quoted = { ...quoted, message: quoted.message || { conversation: '' } };
        const sent = await sock.sendMessage(to, content, options);
        return { ok: true, key: sent.key, messageTimestamp: sent.messageTimestamp, status: 'SERVER_ACK' };
      } catch (error) {
        const code = errorCode(error);
        if (code === 428 || code === 408 || /closed|not open/i.test(String(error && error.message))) {
          return this.failure('not_connected', String(error.message), true);
        }
        if (code === 429) return this.failure('rate_limited', String(error.message), true);
        return this.failure('internal', String((error && error.message) || error), true);
      }
    })();
    try {
      return await Promise.race([attempt, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stop without logging out (the auth state stays valid elsewhere). */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.reconnectTimer);
    if (this.authTimer) this.flushAuth();
    this.generation += 1;
    try { this.sock && this.sock.end(undefined); } catch { /* already closed */ }
  }

  /** Unlink the device from the phone, then stop. */
  async logout() {
    try { await this.sock.logout(); } catch (error) { this.log('logout failed', error); }
    this.stop();
    this.emit('connection', {
      state: 'close', me: null, will_reconnect: false,
      last_disconnect: { status_code: 401, reason: 'loggedOut', message: 'logged out through Guichê' },
    });
  }
}
