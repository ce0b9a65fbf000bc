// The console's shell: login, the header (company, presence, language, logout), the
// hash router and the live socket shared by every view.
import { html, render, useEffect, useState } from "./vendor/htm-preact.js";
import { api, getSession, login, logout, onSession, switchCompany, Live, ApiError } from "./api.js";
import { LANGUAGES, currentLang, setLang, t } from "./i18n.js";
import { bus, state } from "./state.js";
import { Inbox } from "./inbox.js";
import { Supervisor, Channels, PluginPage } from "./admin.js";

function useHash() {
  const [hash, setHash] = useState(location.hash || "#/inbox");
  useEffect(() => {
    const onHash = () => setHash(location.hash || "#/inbox");
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  return hash;
}

function Login({ onDone }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function submit(ev) {
    ev.preventDefault();
    setBusy(true); setError("");
    try { await login(email.trim(), password); onDone(); }
    catch (err) { setError(err.status === 401 ? t("login.failed") : err.message || t("error")); }
    finally { setBusy(false); }
  }
  return html`<main class="login">
    <form onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title">${t("app.title")} · ${t("login.title")}</h1>
      <label>${t("login.email")}<input type="email" name="email" autocomplete="username" required
        value=${email} onInput=${(e) => setEmail(e.target.value)} /></label>
      <label>${t("login.password")}<input type="password" name="password" autocomplete="current-password" required
        value=${password} onInput=${(e) => setPassword(e.target.value)} /></label>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" disabled=${busy}>${t("login.submit")}</button>
      <${LanguagePicker} />
    </form>
  </main>`;
}

function LanguagePicker() {
  const [, force] = useState(0);
  return html`<label class="lang">${t("language")}
    <select value=${currentLang()} onChange=${(e) => { setLang(e.target.value); force((n) => n + 1); rerender(); }}>
      ${LANGUAGES.map(([code, name]) => html`<option value=${code}>${name}</option>`)}
    </select></label>`;
}

function Header({ me, companies, connection, onLogout }) {
  const [presence, setPresence] = useState(null);
  useEffect(() => {
    if (!me.user) return;
    api("GET", "/api/v1/presence").then((p) => setPresence(p.status)).catch(() => setPresence(null));
    return bus.on((ev) => {
      if (ev.type === "operator.status" && ev.data && ev.data.user_id === me.user.id) setPresence(ev.data.status);
    });
  }, [me]);
  async function changePresence(status) {
    setPresence(status);
    try { await state.live.command("presence", { status }); }
    catch { await api("PUT", `/api/v1/users/${me.user.id}/status`, { body: { status } }).catch(() => {}); }
  }
  async function changeCompany(tenantId) {
    await switchCompany(tenantId);
    location.hash = "#/inbox";
  }
  const can = (p) => me.permissions.includes(p);
  return html`<header class="top">
    <a class="brand" href="#/inbox">${t("app.title")}</a>
    <nav aria-label="main">
      <a href="#/inbox">${t("nav.inbox")}</a>
      ${can("users.read") && html`<a href="#/supervisor">${t("nav.supervisor")}</a>`}
      ${can("channels.read") && html`<a href="#/channels">${t("nav.channels")}</a>`}
      ${(me.pages || []).map((p) => html`<a href=${`#/p/${p.plugin}/${p.slug}`}>${p.titles[currentLang()] || p.title}</a>`)}
    </nav>
    <div class="tools">
      ${connection !== "online" && html`<span class="conn" role="status">${t("offline")}</span>`}
      <label>${t("company")}
        <select name="company" value=${me.tenant.id} onChange=${(e) => changeCompany(e.target.value)}>
          ${companies.map((c) => html`<option value=${c.id}>${c.name}</option>`)}
        </select></label>
      ${me.user && html`<label>${t("presence")}
        <select name="presence" value=${presence || ""} onChange=${(e) => changePresence(e.target.value)}>
          ${["online", "away", "offline"].map((s) => html`<option value=${s}>${t("presence." + s)}</option>`)}
        </select></label>`}
      <${LanguagePicker} />
      <span class="who">${me.user ? me.user.name : ""}</span>
      <button type="button" onClick=${onLogout}>${t("logout")}</button>
    </div>
  </header>`;
}

function Shell() {
  const [me, setMe] = useState(null);
  const [companies, setCompanies] = useState([]);
  const [connection, setConnection] = useState("offline");
  const [failed, setFailed] = useState(null);
  const hash = useHash();
  const tenant = getSession() && getSession().tenant && getSession().tenant.id;

  useEffect(() => {
    let stop = false;
    setMe(null);
    (async () => {
      try {
        const [who, list, pages] = await Promise.all([
          api("GET", "/api/v1/auth/me"),
          api("GET", "/api/v1/auth/companies"),
          api("GET", "/api/v1/console/pages").catch(() => ({ items: [] })),
        ]);
        if (stop) return;
        who.pages = pages.items;
        setCompanies(list.items);
        setMe(who);
      } catch (err) { if (!stop) setFailed(err); }
    })();
    const live = new Live((ev) => bus.emit(ev), setConnection);
    state.live = live;
    live.start();
    const off = onSession((s) => { if (s) live.renewToken(); });
    return () => { stop = true; off(); live.stop(); if (state.live === live) state.live = null; };
  }, [tenant]);

  if (failed) return html`<p class="error" role="alert">${failed.message}</p>`;
  if (!me) return html`<p class="boot">…</p>`;
  const [, view, a, b] = hash.split("/");
  let main;
  if (view === "supervisor") main = html`<${Supervisor} me=${me} />`;
  else if (view === "channels") main = html`<${Channels} me=${me} />`;
  else if (view === "p") main = html`<${PluginPage} me=${me} page=${me.pages.find((p) => p.plugin === a && p.slug === b)} />`;
  else main = html`<${Inbox} me=${me} conversationId=${view === "c" ? a : null} />`;
  return html`<div class="shell">
    <${Header} me=${me} companies=${companies} connection=${connection} onLogout=${() => logout().then(rerender)} />
    ${main}
  </div>`;
}

function App() {
  const [session, setSession] = useState(getSession());
  useEffect(() => onSession((s) => setSession(s)), []);
  if (!session) return html`<${Login} onDone=${() => setSession(getSession())} />`;
  return html`<${Shell} key=${session.tenant && session.tenant.id} />`;
}

const root = document.getElementById("app");
export function rerender() { render(html`<${App} key=${currentLang()} />`, root); }
addEventListener("unhandledrejection", (ev) => {
  if (ev.reason instanceof ApiError) { console.warn(ev.reason.message); ev.preventDefault(); }
});
root.textContent = "";
rerender();
