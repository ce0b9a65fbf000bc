// Baileys' auth state kept in memory only: creds + signal keys. Every change is reported
// through `onChange` (debounced by the session) so the plugin stores it encrypted; a
// sidecar restart gets the snapshot back in `start` and reconnects without a QR.

export function memoryAuthState(snapshot, { initCreds, onChange, fixKey = (_t, v) => v }) {
  const creds = snapshot && snapshot.creds ? snapshot.creds : initCreds();
  const keys = snapshot && snapshot.keys && typeof snapshot.keys === 'object' ? snapshot.keys : {};
  const state = {
    creds,
    keys: {
      async get(type, ids) {
        const bucket = keys[type] || {};
        const out = {};
        for (const id of ids) {
          if (bucket[id] !== undefined && bucket[id] !== null) out[id] = fixKey(type, bucket[id]);
        }
        return out;
      },
      async set(data) {
        for (const type of Object.keys(data)) {
          keys[type] = keys[type] || {};
          for (const id of Object.keys(data[type])) {
            const value = data[type][id];
            if (value === null || value === undefined) delete keys[type][id];
            else keys[type][id] = value;
          }
        }
        onChange();
      },
    },
  };
  return {
    state,
    snapshot: () => ({ creds: state.creds, keys }),
    saveCreds: () => onChange(),
  };
}
