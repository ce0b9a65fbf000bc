// The real Baileys socket factory, loaded only when a real session starts (tests use
// ./fake.js). Auth comes from memory (./auth.js); nothing is written to disk.

export async function baileysFactory(logger) {
  const baileys = await import('baileys');
  const makeWASocket = baileys.default || baileys.makeWASocket;
  const { Browsers, downloadMediaMessage, initAuthCreds, makeCacheableSignalKeyStore, proto } = baileys;
  return {
    initCreds: initAuthCreds,
    fixKey: (type, value) => (type === 'app-state-sync-key' && value ? proto.Message.AppStateSyncKeyData.fromObject(value) : value),
    makeSocket: ({ state, options }) => makeWASocket({
      auth: { creds: state.creds, keys: makeCacheableSignalKeyStore(state.keys, logger) },
      logger,
      browser: Browsers.ubuntu('Guichê'),
      printQRInTerminal: false,
      syncFullHistory: Boolean(options.sync_history),
      markOnlineOnConnect: false,
    }),
    downloadMedia: (sock, message) => downloadMediaMessage(message, 'buffer', {}, {
      logger, reuploadRequest: sock.updateMediaMessage,
    }),
  };
}
