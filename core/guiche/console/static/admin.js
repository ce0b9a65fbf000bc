// Supervisor and admin views: the queue and agents' loads, channels with their live
// state, and pages plugins add (`guiche_console_pages`).
import { html, useEffect, useState, useRef } from "./vendor/htm-preact.js";
import { api } from "./api.js";
import { currentLang, t } from "./i18n.js";
import { bus, debounce, fmtTime } from "./state.js";

async function allPages(path, max = 1000) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

export function Supervisor({ me }) {
  const [queue, setQueue] = useState([]);
  const [agents, setAgents] = useState([]);
  const [loads, setLoads] = useState({});
  const scope = me.permissions.includes("conversations.read_all") ? "all" : "departments";
  const load = debounce(async () => {
    const [pending, active, users] = await Promise.all([
      allPages(`/api/v1/conversations?category=pending&scope=${scope}`),
      allPages(`/api/v1/conversations?category=active&scope=${scope}`),
      allPages("/api/v1/users?is_active=true"),
    ]);
    const count = {};
    for (const c of active) if (c.assignee) count[c.assignee.id] = (count[c.assignee.id] || 0) + 1;
    setQueue(pending);
    setLoads(count);
    setAgents(users.filter((u) => u.role !== "viewer"));
  }, 200);
  useEffect(() => {
    load();
    return bus.on((ev) => { if (ev.type === "conversation.updated" || ev.type === "operator.status" || ev.type === "resynced") load(); });
  }, []);
  return html`<main class="page supervisor">
    <section><h2>${t("sup.queue")} (${queue.length})</h2>
      <ul class="queue">${queue.map((c) => html`<li key=${c.id}><a href=${`#/c/${c.id}`}>${c.contact.name || c.contact.phone}</a>
        <small>${c.department ? c.department.name : ""} · ${fmtTime(c.queued_at || c.opened_at)}</small></li>`)}</ul></section>
    <section><h2>${t("sup.agents")}</h2>
      <table><thead><tr><th scope="col">${t("sup.name")}</th><th scope="col">${t("sup.status")}</th><th scope="col">${t("sup.load")}</th></tr></thead>
        <tbody>${agents.map((u) => html`<tr key=${u.id} data-user=${u.id}><td>${u.name}</td>
          <td><span class=${`dot ${u.status}`}></span>${t("presence." + u.status)}</td>
          <td>${loads[u.id] || 0} / ${u.max_concurrent_chats}</td></tr>`)}</tbody></table></section>
  </main>`;
}

export function Channels() {
  const [channels, setChannels] = useState([]);
  const load = debounce(() => allPages("/api/v1/channels").then(setChannels).catch(() => {}), 100);
  useEffect(() => {
    load();
    return bus.on((ev) => { if (ev.type === "channel.state" || ev.type === "resynced") load(); });
  }, []);
  return html`<main class="page channels"><h2>${t("nav.channels")}</h2>
    <table><thead><tr><th scope="col">${t("ch.name")}</th><th scope="col">${t("ch.type")}</th><th scope="col">${t("ch.state")}</th></tr></thead>
      <tbody>${channels.map((c) => html`<tr key=${c.id} data-channel=${c.id}><td>${c.name}${c.phone ? ` (${c.phone})` : ""}</td>
        <td>${c.type}</td><td class=${`state ${c.state}`}>${c.state}${c.state_detail ? ` — ${c.state_detail}` : ""}</td></tr>`)}</tbody></table>
  </main>`;
}

/** A plugin's page: its module's default export `mount(element, console)` draws it and
 *  may return a cleanup function. `console` offers the API, events and language. */
export function PluginPage({ me, page }) {
  const ref = useRef(null);
  const [error, setError] = useState("");
  useEffect(() => {
    if (!page) return;
    let cleanup = null;
    let gone = false;
    import(page.module_url).then((mod) => {
      if (gone) return;
      const ctx = { api, me, lang: currentLang(), t, onEvent: (fn) => bus.on(fn) };
      cleanup = mod.default(ref.current, ctx);
    }).catch((err) => setError(err.message));
    return () => { gone = true; if (typeof cleanup === "function") cleanup(); if (ref.current) ref.current.textContent = ""; };
  }, [page && page.module_url]);
  if (!page) return html`<main class="page"><p class="error">404</p></main>`;
  return html`<main class="page plugin" data-plugin=${page.plugin}>
    <h2>${page.titles[currentLang()] || page.title}</h2>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <div ref=${ref}></div></main>`;
}
