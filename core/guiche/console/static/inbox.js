// The inbox: conversations by category and scope, live over the socket, with unread
// counts and contact search; the open conversation beside it (conversation.js).
import { html, useEffect, useMemo, useState, useRef } from "./vendor/htm-preact.js";
import { api } from "./api.js";
import { t } from "./i18n.js";
import { bus, debounce, fmtTime } from "./state.js";
import { Conversation } from "./conversation.js";

const CATEGORIES = ["pending", "active", "bot", "closed"];
const PAGE = 50;

function scopesFor(me) {
  const scopes = ["mine"];
  if (me.permissions.includes("conversations.read_departments") || me.role === "agent") scopes.push("departments");
  if (me.permissions.includes("conversations.read_all")) scopes.push("all");
  return scopes;
}

function listPath(category, scope, q, cursor) {
  const params = new URLSearchParams({ category, limit: String(PAGE) });
  if (scope) params.set("scope", scope);
  if (q) params.set("q", q);
  if (cursor) params.set("cursor", cursor);
  return `/api/v1/conversations?${params}`;
}

const activity = (c) => c.last_message_at || c.created_at;

export function Inbox({ me, conversationId }) {
  const scopes = scopesFor(me);
  const [category, setCategory] = useState("pending");
  const [scope, setScope] = useState(scopes.includes("all") ? "all" : scopes[scopes.length - 1]);
  const [q, setQ] = useState("");
  const [items, setItems] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [counts, setCounts] = useState(null);
  const [loading, setLoading] = useState(true);
  const filters = useRef({ category, scope, q });
  filters.current = { category, scope, q };

  async function reload() {
    const f = filters.current;
    setLoading(true);
    try {
      const page = await api("GET", listPath(f.category, f.scope, f.q));
      if (filters.current !== f && JSON.stringify(filters.current) !== JSON.stringify(f)) return;
      setItems(page.items);
      setCursor(page.next_cursor);
    } finally { setLoading(false); }
  }
  const reloadCounts = useMemo(() => debounce(async () => {
    const f = filters.current;
    const unread = await api("GET", `/api/v1/conversations/unread?scope=${f.scope}`).catch(() => null);
    if (unread) setCounts(unread);
  }, 150), []);

  useEffect(() => { reload(); reloadCounts(); }, [category, scope, q]);

  // One conversation changed: fetch it as the API shows it now, and place or drop it.
  async function refreshOne(id) {
    let conv = null;
    try { conv = await api("GET", `/api/v1/conversations/${id}`); }
    catch (err) { if (err.status !== 404 && err.status !== 403) throw err; }
    const f = filters.current;
    const fits = conv && conv.status.toLowerCase() === f.category
      && (f.scope !== "mine" || (conv.assignee && me.user && conv.assignee.id === me.user.id))
      && (!f.q || `${conv.contact.name} ${conv.contact.phone || ""}`.toLowerCase().includes(f.q.toLowerCase()));
    setItems((list) => {
      const rest = list.filter((c) => c.id !== id);
      if (!fits) return rest;
      const old = list.find((c) => c.id === id);
      if (old && conv.unread_count == null) conv.unread_count = old.unread_count;
      return [conv, ...rest].sort((x, y) => (activity(y) > activity(x) ? 1 : -1));
    });
  }

  useEffect(() => bus.on((ev) => {
    if (ev.type === "resynced") { reload(); reloadCounts(); return; }
    if (ev.type === "conversation.left") {  // out of this person's sight: drop it, fetch nothing
      setItems((list) => list.filter((c) => c.id !== ev.conversation_id));
      if (location.hash === `#/c/${ev.conversation_id}`) location.hash = "#/inbox";
      reloadCounts();
      return;
    }
    if (ev.conversation_id && /^(message|conversation)\./.test(ev.type)) {
      refreshOne(ev.conversation_id).catch((err) => console.warn(err));
      reloadCounts();
    }
  }), [me]);

  async function more() {
    const f = filters.current;
    const page = await api("GET", listPath(f.category, f.scope, f.q, cursor));
    setItems((list) => [...list, ...page.items.filter((c) => !list.some((o) => o.id === c.id))]);
    setCursor(page.next_cursor);
  }

  const onSearch = useMemo(() => debounce((value) => setQ(value.trim()), 250), []);
  return html`<div class=${"inbox" + (conversationId ? " has-open" : "")}>
    <section class="list" aria-label=${t("nav.inbox")}>
      <div class="tabs" role="tablist">
        ${CATEGORIES.map((cat) => html`<button type="button" role="tab" aria-selected=${cat === category}
            class=${cat === category ? "tab on" : "tab"} data-category=${cat} onClick=${() => setCategory(cat)}>
          ${t("cat." + cat)}${counts && counts[cat] ? html` <span class="badge" aria-label=${`${counts[cat]} ${t("unread")}`}>${counts[cat]}</span>` : ""}
        </button>`)}
      </div>
      <div class="filters">
        <label>${t("scope")}
          <select name="scope" value=${scope} onChange=${(e) => setScope(e.target.value)}>
            ${scopes.map((s) => html`<option value=${s}>${t("scope." + s)}</option>`)}
          </select></label>
        <label class="search">${t("search.contact")}
          <input type="search" name="q" onInput=${(e) => onSearch(e.target.value)} /></label>
      </div>
      <ul class="conversations">
        ${items.map((c) => html`<li key=${c.id}>
          <a href=${`#/c/${c.id}`} class=${c.id === conversationId ? "conv on" : "conv"} data-id=${c.id}
             aria-current=${c.id === conversationId ? "page" : undefined}>
            <span class="name">${c.contact.name || c.contact.phone}</span>
            <span class="time">${fmtTime(activity(c))}</span>
            <span class="preview">${c.last_message ? c.last_message.body : ""}</span>
            ${c.unread_count ? html`<span class="badge unread" aria-label=${`${c.unread_count} ${t("unread")}`}>${c.unread_count}</span>` : ""}
            <span class="meta">${c.channel.name}${c.department ? " · " + c.department.name : ""}${c.assignee ? " · " + c.assignee.name : ""}</span>
          </a></li>`)}
      </ul>
      ${!loading && !items.length && html`<p class="empty">${t("inbox.empty")}</p>`}
      ${cursor && html`<button type="button" class="more" onClick=${more}>…</button>`}
    </section>
    <section class="open" aria-label=${t("conv.region")}>
      ${conversationId
        ? html`<${Conversation} key=${conversationId} id=${conversationId} me=${me}
              onRead=${() => { reloadCounts(); setItems((list) => list.map((c) => (c.id === conversationId ? { ...c, unread_count: 0 } : c))); }} />`
        : html`<p class="empty">${t("inbox.pick")}</p>`}
    </section>
  </div>`;
}
