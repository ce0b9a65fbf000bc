// The public REST API and the WebSocket, with the session kept across reloads:
// a 401 on an expired access token refreshes once (rotating the refresh token) and
// retries, so the page never loses its state to a token's lifetime.
const KEY = "guiche.session";
let session = JSON.parse(localStorage.getItem(KEY) || "null");
let refreshing = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
    this.details = body && body.error && body.error.details;
  }
}

export const getSession = () => session;
queueMicrotask(() => scheduleRenewal());
export const onSession = (fn) => { listeners.add(fn); return () => listeners.delete(fn); };

let renewTimer = null;

/** Refresh a minute before the access token expires, so an idle page's socket is
 *  re-authenticated (`auth` frame) instead of being closed at expiry. */
function scheduleRenewal() {
  clearTimeout(renewTimer);
  if (!session) return;
  const wait = Math.max(session.expires_at - Date.now() - 60_000, 5_000);
  renewTimer = setTimeout(() => refresh().catch(() => {}), wait);
}

function store(pair) {
  session = pair && {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    expires_at: Date.now() + pair.expires_in * 1000,
    tenant: pair.tenant,
  };
  if (session) localStorage.setItem(KEY, JSON.stringify(session));
  else localStorage.removeItem(KEY);
  scheduleRenewal();
  for (const fn of listeners) fn(session);
}

async function raw(method, path, { body, token, form } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const resp = await fetch(path, { method, headers, body: payload });
  const text = resp.status === 204 ? "" : await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export async function login(email, password, tenantId) {
  const body = { email, password };
  if (tenantId) body.tenant_id = tenantId;
  store(await raw("POST", "/api/v1/auth/login", { body }));
}

function stored() {
  return JSON.parse(localStorage.getItem(KEY) || "null");
}

/** Another tab of this browser logged in, refreshed, switched company or logged out:
 *  follow it (refresh tokens rotate, so two tabs must never present the same one). */
addEventListener("storage", (ev) => {
  if (ev.key !== KEY) return;
  session = stored();
  scheduleRenewal();
  for (const fn of listeners) fn(session);
});

async function rotate() {
  const latest = stored();
  if (latest && session && latest.refresh_token !== session.refresh_token) {
    session = latest;  // another tab rotated it already
    for (const fn of listeners) fn(session);
    return;
  }
  const token = session.refresh_token;
  try {
    store(await raw("POST", "/api/v1/auth/refresh", { body: { refresh_token: token } }));
  } catch (err) {
    if (err.status === 401) store(null);
    throw err;
  }
}

export async function refresh() {
  if (!session) throw new ApiError(401, null);
  if (!refreshing) {
    // one refresh at a time across this browser's tabs (Web Locks), else within the tab
    const run = navigator.locks ? navigator.locks.request("guiche.refresh", rotate) : rotate();
    refreshing = run.finally(() => { refreshing = null; });
  }
  return refreshing;
}

export async function switchCompany(tenantId) {
  store(await api("POST", "/api/v1/auth/switch", { body: { tenant_id: tenantId } }));
}

export async function logout() {
  const current = session;
  store(null);
  if (current) {
    try { await raw("POST", "/api/v1/auth/logout", { body: { refresh_token: current.refresh_token }, token: current.access_token }); }
    catch { /* the session is gone on this side either way */ }
  }
}

/** An authenticated call: refreshes the access token first when it is about to expire,
 *  and once more on a 401 (the server may have ended it sooner) — unless another call
 *  refreshed it meanwhile: calls sent together with the old token all come back 401,
 *  and only the first of them may rotate the refresh token. */
export async function api(method, path, opts = {}) {
  if (!session) throw new ApiError(401, null);
  if (session.expires_at - Date.now() < 30_000) await refresh();
  const used = session.access_token;
  try {
    return await raw(method, path, { ...opts, token: used });
  } catch (err) {
    if (err.status !== 401 || !session) throw err;
    if (session.access_token === used) await refresh();
    return raw(method, path, { ...opts, token: session.access_token });
  }
}

/** A protected file (an attachment) as an object URL the page can show. */
export async function blobUrl(path) {
  if (session.expires_at - Date.now() < 30_000) await refresh();
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${session.access_token}` } });
  if (!resp.ok) throw new ApiError(resp.status, null);
  return URL.createObjectURL(await resp.blob());
}

/** The live socket. Events are delivered once each, in seq order: after every
 *  (re)connect the `ready` frame's `last_seq` is compared with the last seq seen and
 *  the gap is read from /api/v1/events?after=, so nothing is missed while away. */
export class Live {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastSeq = null;
    this.ws = null;
    this.closed = false;
    this.retry = 500;
    this.pending = new Map();
    this.nextId = 1;
  }

  start() { this.closed = false; this.connect(); }

  stop() { this.closed = true; if (this.ws) this.ws.close(1000); }

  async connect() {
    if (this.closed) return;
    if (!session) return;
    if (session.expires_at - Date.now() < 30_000) { try { await refresh(); } catch { return; } }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: session.access_token }));
    ws.onmessage = (msg) => this.frame(JSON.parse(msg.data));
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onState("offline");
      if (this.closed) return;
      const wait = ev.code === 4401 ? 0 : this.retry;
      if (ev.code === 4401) refresh().catch(() => {});
      this.retry = Math.min(this.retry * 2, 10_000);
      setTimeout(() => this.connect(), wait);
    };
  }

  async frame(frame) {
    if (frame.type === "ready") {
      this.retry = 500;
      this.onState("online");
      await this.resync(frame.last_seq);
      return;
    }
    if (frame.type === "ack" || frame.type === "error") {
      const waiter = this.pending.get(frame.id);
      if (waiter) { this.pending.delete(frame.id); waiter(frame); }
      return;
    }
    if (typeof frame.seq === "number") this.deliver(frame);
    else if (frame.type) this.onEvent(frame);
  }

  deliver(event) {
    if (this.lastSeq !== null && event.seq <= this.lastSeq) return;  // seen already
    this.lastSeq = event.seq;
    this.onEvent(event);
  }

  async resync(lastSeq) {
    if (this.lastSeq === null) {
      // First connection: the views loaded before the socket was live, so whatever
      // happened in between is in neither; they reload once ("resynced").
      this.lastSeq = lastSeq;
      this.onEvent({ type: "resynced" });
      return;
    }
    let after = this.lastSeq;
    for (;;) {
      const page = await api("GET", `/api/v1/events?after=${after}&limit=500`);
      for (const event of page.items) this.deliver(event);
      after = page.next_after;
      if (!page.has_more) break;
    }
    this.onEvent({ type: "resynced" });
  }

  command(type, fields = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) { reject(new Error("offline")); return; }
      const id = this.nextId++;
      this.pending.set(id, (frame) => (frame.type === "ack" ? resolve(frame) : reject(new ApiError(400, frame))));
      this.ws.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  renewToken() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && session)
      this.ws.send(JSON.stringify({ type: "auth", id: this.nextId++, token: session.access_token }));
  }
}
