// The bridge protocol (v1): one JSON object per line over TCP,
// {"v": 1, "type": ..., "session": <channel id>, "data": {...}}.
// Buffers travel as Baileys' BufferJSON ({"type":"Buffer","data":"<base64>"}),
// long.js Longs as plain numbers. Unknown types and a newer `v` are ignored, never fatal.

export const VERSION = 1;

function isLong(value) {
  return value !== null && typeof value === 'object' && typeof value.toNumber === 'function'
    && 'low' in value && 'high' in value;
}

export function replacer(_key, value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array || (value && value.type === 'Buffer' && Array.isArray(value.data))) {
    return { type: 'Buffer', data: Buffer.from(value.data || value).toString('base64') };
  }
  if (isLong(value)) return value.toNumber();
  if (typeof value === 'bigint') return Number(value);
  return value;
}

export function reviver(_key, value) {
  if (value !== null && typeof value === 'object' && value.type === 'Buffer' && typeof value.data === 'string') {
    return Buffer.from(value.data, 'base64');
  }
  return value;
}

/** A value with Buffers as BufferJSON and Longs as numbers, ready for JSON.stringify. */
export function toWire(value) {
  if (value === null || value === undefined) return value;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    return { type: 'Buffer', data: Buffer.from(value).toString('base64') };
  }
  if (isLong(value)) return value.toNumber();
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(toWire);
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') {
    if (value.type === 'Buffer' && Array.isArray(value.data)) return replacer('', value);
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      if (item !== undefined && typeof item !== 'function') out[key] = toWire(item);
    }
    return out;
  }
  return value;
}

/** One frame as a line of text. */
export function encode(type, session, data) {
  return JSON.stringify({ v: VERSION, type, session: session ?? null, data: toWire(data ?? {}) }) + '\n';
}

/** A parsed frame, or {ignored: reason} for lines we must log and skip. */
export function decode(line) {
  let frame;
  try {
    frame = JSON.parse(line, reviver);
  } catch {
    return { ignored: 'not JSON' };
  }
  if (frame === null || typeof frame !== 'object' || typeof frame.type !== 'string') {
    return { ignored: 'not a frame' };
  }
  if (frame.v !== VERSION) return { ignored: `protocol version ${frame.v}` };
  frame.data = frame.data && typeof frame.data === 'object' ? frame.data : {};
  return frame;
}

/** Splits a byte stream into lines; calls `onLine` for each complete one. */
export function lineReader(onLine, maxLine = 64 * 1024 * 1024) {
  let buffered = '';
  return (chunk) => {
    buffered += chunk.toString('utf8');
    let at;
    while ((at = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      if (line.trim()) onLine(line);
    }
    if (buffered.length > maxLine) buffered = '';
  };
}
