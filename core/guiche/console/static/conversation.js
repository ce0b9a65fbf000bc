// One conversation: history with infinite scroll, live updates, reply (text, file,
// template when the 24-hour window is closed), accept / transfer / close, notes, the
// contact's card and past conversations.
import { html, useEffect, useMemo, useState, useRef } from "./vendor/htm-preact.js";
import { api, blobUrl } from "./api.js";
import { t } from "./i18n.js";
import { bus, debounce, fmtTime, state } from "./state.js";

const PAGE = 30;
const TICKS = { pending: "○", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "⚠", unknown: "?" };

function merge(list, incoming) {
  const byId = new Map(list.map((m) => [m.id, m]));
  for (const m of incoming) byId.set(m.id, m);
  return [...byId.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : 1));
}

function Media({ message }) {
  const [url, setUrl] = useState(null);
  const [name, setName] = useState(null);
  const kind = message.type;
  useEffect(() => {
    if (!message.media_id && !["image", "audio", "video", "document", "sticker"].includes(kind)) return;
    let revoked = null;
    api("GET", `/api/v1/messages/${message.id}/media`)
      .then((att) => { setName(att.filename || att.mime_type); return blobUrl(att.download_url); })
      .then((u) => { revoked = u; setUrl(u); })
      .catch(() => {});
    return () => { if (revoked) URL.revokeObjectURL(revoked); };
  }, [message.id, message.media_id]);
  if (!url) return null;
  if (kind === "image" || kind === "sticker") return html`<img class="media" src=${url} alt=${message.body || name || kind} />`;
  if (kind === "audio") return html`<audio class="media" controls src=${url}></audio>`;
  if (kind === "video") return html`<video class="media" controls src=${url}></video>`;
  return html`<a class="media" href=${url} download=${name || "file"}>${t("download")} ${name || ""}</a>`;
}

function Message({ m }) {
  const tick = m.direction === "out" ? TICKS[m.status] || "" : "";
  return html`<li class=${`msg ${m.direction}`} data-id=${m.id} data-status=${m.status}>
    <${Media} message=${m} />
    ${m.body && html`<p class="body">${m.body}</p>`}
    <span class="stamp">${fmtTime(m.created_at)}
      ${tick && html` <span class=${`tick ${m.status}`} title=${t("status." + m.status)}
        aria-label=${t("status." + m.status)}>${tick}</span>`}</span>
  </li>`;
}

export function Dialog({ title, onClose, children }) {
  const ref = useRef(null);
  useEffect(() => {
    const opener = document.activeElement;  // focus goes back there when the dialog closes
    const el = ref.current;
    const first = el && el.querySelector("select, input, textarea, button");
    if (first) first.focus();
    const onKey = (e) => {
      if (e.key === "Escape") onClose();
      if (e.key !== "Tab" || !el) return;  // keep Tab inside the dialog
      const items = [...el.querySelectorAll("select, input, textarea, button, a[href]")].filter((x) => !x.disabled);
      if (!items.length) return;
      const [head, tail] = [items[0], items[items.length - 1]];
      if (e.shiftKey && document.activeElement === head) { e.preventDefault(); tail.focus(); }
      else if (!e.shiftKey && document.activeElement === tail) { e.preventDefault(); head.focus(); }
    };
    addEventListener("keydown", onKey);
    return () => { removeEventListener("keydown", onKey); if (opener && opener.focus && opener.isConnected) opener.focus(); };
  }, []);
  return html`<div class="backdrop"><div class="dialog" role="dialog" aria-modal="true" aria-label=${title} ref=${ref}>
    <h2>${title}</h2>${children}</div></div>`;
}

function TransferDialog({ me, conv, onClose }) {
  const [agents, setAgents] = useState([]);
  const [departments, setDepartments] = useState([]);
  const [userId, setUserId] = useState("");
  const [departmentId, setDepartmentId] = useState("");
  const [note, setNote] = useState("");
  const [error, setError] = useState("");
  useEffect(() => {
    api("GET", "/api/v1/departments?limit=200").then((p) => setDepartments(p.items)).catch(() => {});
    api("GET", "/api/v1/agents").then((p) => setAgents(p.items.filter((u) => !me.user || u.id !== me.user.id))).catch(() => {});
  }, []);
  async function submit(e) {
    e.preventDefault();
    const body = { note };
    if (userId) body.user_id = userId;
    if (departmentId) body.department_id = departmentId;
    try {
      const moved = await api("POST", `/api/v1/conversations/${conv.id}/transfer`, { body });
      onClose(moved);
    }
    catch (err) { setError(err.message); }
  }
  return html`<${Dialog} title=${t("conv.transfer")} onClose=${() => onClose(false)}>
    <form onSubmit=${submit} class="stack">
      ${agents.length > 0 && html`<label>${t("transfer.agent")}
        <select name="user_id" value=${userId} onChange=${(e) => setUserId(e.target.value)}>
          <option value="">${t("transfer.none")}</option>
          ${agents.map((u) => html`<option value=${u.id}>${u.name} (${t("presence." + u.status)})</option>`)}
        </select></label>`}
      <label>${t("transfer.department")}
        <select name="department_id" value=${departmentId} onChange=${(e) => setDepartmentId(e.target.value)}>
          <option value="">${t("transfer.none")}</option>
          ${departments.map((d) => html`<option value=${d.id}>${d.name}</option>`)}
        </select></label>
      <label>${t("transfer.note")}<textarea name="note" value=${note} onInput=${(e) => setNote(e.target.value)}></textarea></label>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <div class="row"><button type="submit" disabled=${!userId && !departmentId}>${t("conv.transfer")}</button>
        <button type="button" onClick=${() => onClose(false)}>${t("cancel")}</button></div>
    </form></${Dialog}>`;
}

function CloseDialog({ conv, onClose }) {
  const [tabs, setTabs] = useState([]);
  const [tabId, setTabId] = useState("");
  const [error, setError] = useState("");
  useEffect(() => { api("GET", "/api/v1/tabulations?limit=200").then((p) => setTabs(p.items)).catch(() => {}); }, []);
  async function submit(e) {
    e.preventDefault();
    try { await api("POST", `/api/v1/conversations/${conv.id}/close`, { body: { tabulation_id: tabId } }); onClose(true); }
    catch (err) { setError(err.message); }
  }
  return html`<${Dialog} title=${t("close.confirm")} onClose=${() => onClose(false)}>
    <form onSubmit=${submit} class="stack">
      <label>${t("close.tabulation")}
        <select name="tabulation_id" required value=${tabId} onChange=${(e) => setTabId(e.target.value)}>
          <option value="" disabled>${t("transfer.none")}</option>
          ${tabs.map((tb) => html`<option value=${tb.id}>${tb.name}</option>`)}
        </select></label>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <div class="row"><button type="submit" disabled=${!tabId}>${t("conv.close")}</button>
        <button type="button" onClick=${() => onClose(false)}>${t("cancel")}</button></div>
    </form></${Dialog}>`;
}

function Composer({ conv, onSent }) {
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const [templates, setTemplates] = useState(null);
  const [busy, setBusy] = useState(false);
  const fileRef = useRef(null);
  const lastTyping = useRef(0);
  function announceTyping() {  // colleagues who opened it see "typing…"; never the customer
    if (Date.now() - lastTyping.current < 3000 || !state.live) return;
    lastTyping.current = Date.now();
    state.live.command("typing", { conversation_id: conv.id }).catch(() => {});
  }

  async function send(body) {
    setBusy(true); setError("");
    try {
      const sent = await api("POST", `/api/v1/conversations/${conv.id}/messages`, { body });
      onSent(sent);
      return true;
    } catch (err) {
      if (err.code === "outside_customer_care_window") await openTemplates();
      setError(err.code === "outside_customer_care_window" ? t("conv.window_closed") : err.message);
      return false;
    } finally { setBusy(false); }
  }
  async function openTemplates() {
    const page = await api("GET", `/api/v1/templates?channel_id=${conv.channel.id}&limit=200`).catch(() => ({ items: [] }));
    setTemplates(page.items.filter((tp) => tp.status === "APPROVED"));
  }
  async function submit(e) {
    e && e.preventDefault();
    const value = text.trim();
    if (!value) return;
    if (await send({ type: "text", text: value })) setText("");
  }
  async function upload(e) {
    const file = e.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const media = await api("POST", "/api/v1/media", { form });
      const body = { type: "media", media_id: media.id };
      if (text.trim()) body.caption = text.trim();
      if (await send(body)) setText("");
    } catch (err) { setError(err.message); }
    e.target.value = "";
  }
  return html`<form class="composer" onSubmit=${submit}>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${templates && html`<div class="templates" role="group" aria-label=${t("conv.template")}>
      ${templates.map((tp) => html`<button type="button" onClick=${() => send({ type: "template", template_id: tp.id }).then((ok) => ok && setTemplates(null))}>
        ${tp.name} (${tp.language})</button>`)}</div>`}
    <label class="sr-only" for="reply">${t("conv.reply")}</label>
    <textarea id="reply" name="reply" rows="2" placeholder=${t("conv.reply")} value=${text}
      onInput=${(e) => { setText(e.target.value); announceTyping(); }}
      onKeyDown=${(e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); } }}></textarea>
    <label class="file">${t("conv.file")}<span class="sr-only"> — ${t("conv.attach")}</span>
      <input type="file" name="file" ref=${fileRef} onChange=${upload} /></label>
    <button type="button" class="ghost" onClick=${openTemplates}>${t("conv.template")}</button>
    <button type="submit" disabled=${busy}>${t("conv.send")}</button>
  </form>`;
}

function Side({ conv }) {
  const [contact, setContact] = useState(null);
  const [notes, setNotes] = useState([]);
  const [past, setPast] = useState([]);
  const [note, setNote] = useState("");
  const loadNotes = () => api("GET", `/api/v1/notes?conversation_id=${conv.id}`).then((p) => setNotes(p.items)).catch(() => {});
  useEffect(() => {
    api("GET", `/api/v1/contacts/${conv.contact.id}`).then(setContact).catch(() => {});
    api("GET", `/api/v1/conversations?contact_id=${conv.contact.id}&limit=20`)
      .then((p) => setPast(p.items.filter((c) => c.id !== conv.id))).catch(() => {});
    loadNotes();
  }, [conv.id]);
  async function addNote(e) {
    e.preventDefault();
    if (!note.trim()) return;
    await api("POST", "/api/v1/notes", { body: { conversation_id: conv.id, body: note.trim() } });
    setNote("");
    loadNotes();
  }
  return html`<aside class="side">
    <section aria-label=${t("conv.contact")}><h3>${t("conv.contact")}</h3>
      ${contact && html`<dl><dt>${contact.name}</dt><dd>${contact.phone || ""}</dd>
        ${contact.email && html`<dd>${contact.email}</dd>`}</dl>`}</section>
    <section aria-label=${t("conv.notes")}><h3>${t("conv.notes")}</h3>
      <ul class="notes">${notes.map((n) => html`<li key=${n.id}>${n.body}<small> — ${n.author ? n.author.name : ""} ${fmtTime(n.created_at)}</small></li>`)}</ul>
      <form onSubmit=${addNote} class="stack"><label class="sr-only" for="note">${t("conv.add_note")}</label>
        <textarea id="note" name="note" rows="2" value=${note} onInput=${(e) => setNote(e.target.value)}></textarea>
        <button type="submit">${t("conv.add_note")}</button></form></section>
    <section aria-label=${t("conv.past")}><h3>${t("conv.past")}</h3>
      <ul>${past.map((c) => html`<li key=${c.id}><a href=${`#/c/${c.id}`}>${fmtTime(c.opened_at)} · ${t("cat." + c.status.toLowerCase())}${c.tabulation ? " · " + c.tabulation.name : ""}</a></li>`)}</ul></section>
  </aside>`;
}

export function Conversation({ id, me, onRead }) {
  const [conv, setConv] = useState(null);
  const [messages, setMessages] = useState([]);
  const [older, setOlder] = useState(null);
  const [dialog, setDialog] = useState(null);
  const [error, setError] = useState("");
  const [typing, setTyping] = useState(false);
  const listRef = useRef(null);
  const topRef = useRef(null);
  const stick = useRef(true);

  const loadConv = () => api("GET", `/api/v1/conversations/${id}`).then(setConv);
  const markRead = useMemo(() => debounce(() => api("POST", `/api/v1/conversations/${id}/read`).then(onRead).catch(() => {}), 300), [id]);
  async function loadLatest() {
    const page = await api("GET", `/api/v1/conversations/${id}/messages?limit=${PAGE}`);
    setMessages((list) => merge(list, page.items));
    setOlder((cur) => (cur === null ? page.next_cursor || false : cur));
  }
  async function loadOlder() {
    if (!older) return;
    const el = listRef.current;
    const before = el ? el.scrollHeight - el.scrollTop : 0;
    const page = await api("GET", `/api/v1/conversations/${id}/messages?limit=${PAGE}&cursor=${encodeURIComponent(older)}`);
    stick.current = false;
    setMessages((list) => merge(list, page.items));
    setOlder(page.next_cursor || false);
    requestAnimationFrame(() => { if (el) el.scrollTop = el.scrollHeight - before; });
  }

  useEffect(() => {
    loadConv().catch((err) => setError(err.message));
    loadLatest().then(markRead).catch((err) => setError(err.message));
    let typingTimer = null;
    const join = () => state.live && state.live.command("conversation.join", { conversation_id: id }).catch(() => {});
    join();
    const off = bus.on((ev) => {
      if (ev.type === "resynced") { loadConv().catch(() => {}); loadLatest().catch(() => {}); join(); return; }
      if (ev.conversation_id !== id) return;
      if (ev.type === "typing" && (!me.user || ev.user_id !== me.user.id)) {
        setTyping(true);
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => setTyping(false), 4000);
        return;
      }
      if (ev.type.startsWith("message.")) {
        stick.current = true;
        loadLatest().catch(() => {});
        if (ev.type === "message.new") markRead();
      }
      if (ev.type === "conversation.updated") {
        // handed to a colleague: an agent no longer sees it, so do not ask for it (a 404)
        const to = ev.data && ev.data.assignee_id;
        if (me.role === "agent" && me.user && to && to !== me.user.id) { location.hash = "#/inbox"; return; }
        loadConv().catch(() => {});
      }
    });
    return () => { off(); clearTimeout(typingTimer); markRead.cancel(); };
  }, [id]);

  const shown = conv !== null;
  useEffect(() => {
    const el = listRef.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [messages, shown]);

  useEffect(() => {  // infinite scroll: the sentinel above the oldest message loads more
    if (!shown || !topRef.current || !older) return;
    const seen = new IntersectionObserver((entries) => {
      if (entries[0].isIntersecting && listRef.current.scrollHeight > listRef.current.clientHeight) loadOlder();
    }, { root: listRef.current });
    seen.observe(topRef.current);
    return () => seen.disconnect();
  }, [older, shown, messages.length > 0]);

  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!conv) return html`<p class="boot">…</p>`;
  const status = conv.status.toLowerCase();
  const mine = conv.assignee && me.user && conv.assignee.id === me.user.id;
  const act = (path) => api("POST", `/api/v1/conversations/${id}/${path}`).then(setConv).catch((err) => setError(err.message));
  return html`<div class="conversation" data-status=${status}>
    <header class="conv-head">
      <a class="back" href="#/inbox">← ${t("conv.back")}</a>
      <h2>${conv.contact.name || conv.contact.phone}</h2>
      <span class="meta">${t("cat." + status)}${conv.assignee ? " · " + conv.assignee.name : ""}${conv.department ? " · " + conv.department.name : ""}</span>
      <div class="actions">
        ${(status === "pending" || status === "bot" || (status === "active" && !mine)) && me.permissions.includes("conversations.accept")
          && html`<button type="button" onClick=${() => act("accept")}>${t("conv.accept")}</button>`}
        ${status !== "closed" && html`<button type="button" onClick=${() => setDialog("transfer")}>${t("conv.transfer")}</button>`}
        ${status !== "closed" && html`<button type="button" onClick=${() => setDialog("close")}>${t("conv.close")}</button>`}
        ${status === "closed" && html`<button type="button" onClick=${() => act("reopen")}>${t("conv.reopen")}</button>`}
      </div>
    </header>
    <div class="conv-body">
      <div class="thread">
        <ol class="messages" ref=${listRef} tabindex="0" aria-label=${conv.contact.name}>
          ${older && html`<li class="older" ref=${topRef}><button type="button" onClick=${loadOlder}>${t("conv.load_older")}</button></li>`}
          ${messages.map((m) => html`<${Message} key=${m.id} m=${m} />`)}
        </ol>
        ${typing && html`<p class="typing" role="status">${t("conv.typing")}</p>`}
        ${status !== "closed" && html`<${Composer} conv=${conv} onSent=${(m) => { stick.current = true; setMessages((list) => merge(list, [m])); }} />`}
      </div>
      <${Side} conv=${conv} />
    </div>
    ${dialog === "transfer" && html`<${TransferDialog} me=${me} conv=${conv} onClose=${(moved) => {
      setDialog(null);
      if (!moved) return;
      // handed to someone else: it leaves this agent's screen (and maybe their sight)
      if (moved.assignee && me.user && moved.assignee.id !== me.user.id && me.role === "agent") location.hash = "#/inbox";
      else setConv(moved);
    }} />`}
    ${dialog === "close" && html`<${CloseDialog} conv=${conv} onClose=${(done) => { setDialog(null); if (done) loadConv().catch(() => {}); }} />`}
  </div>`;
}
