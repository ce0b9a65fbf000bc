// What every view shares: the event bus fed by the live socket, and the socket itself.
export const bus = {
  listeners: new Set(),
  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
  emit(event) {
    for (const fn of this.listeners) { try { fn(event); } catch (err) { console.warn(err); } }
  },
};
export const state = { live: null };

/** Run `fn` at most once per `ms`, trailing (a burst of events, one reload). */
export function debounce(fn, ms) {
  let timer = null;
  const call = (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  call.cancel = () => clearTimeout(timer);  // e.g. when the view it serves goes away
  return call;
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const today = new Date();
  const opts = d.toDateString() === today.toDateString()
    ? { hour: "2-digit", minute: "2-digit" }
    : { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" };
  return d.toLocaleString(document.documentElement.lang, opts);
}
