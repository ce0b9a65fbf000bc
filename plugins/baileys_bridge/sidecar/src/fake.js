// A scriptable stand-in for Baileys' socket: tests (and the sidecar started with
// BRIDGE_FAKE_SOCKET=1) drive it with Baileys-shaped events; it never touches WhatsApp.

import { randomBytes } from 'node:crypto';

export class FakeSocket {
  constructor({ sessionId, state }) {
    this.sessionId = sessionId;
    this.state = state;
    this.handlers = [];
    this.sent = [];
    this.media = new Map();
    this.user = null;
    this.ended = false;
    this.loggedOut = false;
    this.unknownNumbers = new Set();
    this.failNext = null;
    this.ev = { process: (handler) => { this.handlers.push(handler); } };
  }

  /** Deliver one Baileys event batch, as `ev.process` handlers receive them. */
  async fire(events) {
    if (events['messages.upsert']) {
      for (const message of events['messages.upsert'].messages || []) {
        if (message._media_base64) {
          this.media.set(message.key.id, Buffer.from(message._media_base64, 'base64'));
          delete message._media_base64;
        }
      }
    }
    if (events['connection.update'] && events['connection.update'].connection === 'open' && !this.user) {
      this.user = { id: '5511912345678:1@s.whatsapp.net', name: 'Fake' };
    }
    if (events['connection.update'] && events['connection.update'].user) {
      this.user = events['connection.update'].user;
    }
    for (const handler of this.handlers) await handler(events);
  }

  async onWhatsApp(jid) {
    return [{ jid, exists: !this.unknownNumbers.has(jid) }];
  }

  async sendMessage(jid, content, options) {
    if (this.failNext) {
      const error = this.failNext;
      this.failNext = null;
      throw error;
    }
    const id = `3EB0${randomBytes(8).toString('hex').toUpperCase()}`;
    this.sent.push({ jid, content, options });
    return { key: { remoteJid: jid, fromMe: true, id }, messageTimestamp: Math.floor(Date.now() / 1000) };
  }

  async requestPairingCode(phone) {
    return `FAKE${phone.slice(-4)}`;
  }

  async logout() { this.loggedOut = true; }

  end() { this.ended = true; }
}

export function fakeFactory() {
  const sockets = [];
  return {
    sockets,
    initCreds: () => ({ noiseKey: { private: Buffer.from('fake-private'), public: Buffer.from('fake-public') }, registered: false }),
    fixKey: (_type, value) => value,
    makeSocket: (args) => {
      const sock = new FakeSocket(args);
      sockets.push(sock);
      return sock;
    },
    downloadMedia: async (sock, message) => {
      const bytes = sock.media.get(message.key.id);
      if (!bytes) throw new Error('no such media');
      return bytes;
    },
  };
}
