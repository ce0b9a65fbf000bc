// Supervisor and admin views: the queue and agents' loads, channels with their live
// state, and pages plugins add (`guiche_console_pages`).
import { html, useEffect, useState, useRef } from "./vendor/htm-preact.js";
import { api } from "./api.js";
import { currentLang, t } from "./i18n.js";
import { bus, debounce, fmtTime } from "./state.js";
import { Dialog } from "./conversation.js";

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

/** A lead hands a queued conversation to someone (POST /conversations/{id}/assign). */
function AssignForm({ conv, agents, loads, onDone }) {
  const [userId, setUserId] = useState("");
  const [error, setError] = useState("");
  const id = `assign-${conv.id}`;
  async function submit(e) {
    e.preventDefault();
    try { await api("POST", `/api/v1/conversations/${conv.id}/assign`, { body: { user_id: userId } }); onDone(); }
    catch (err) { setError(err.message); }
  }
  return html`<form class="assign" onSubmit=${submit}>
    <label for=${id} class="sr-only">${t("sup.assign_to")}</label>
    <select id=${id} name="user_id" value=${userId} onChange=${(e) => setUserId(e.target.value)}>
      <option value="">${t("sup.assign_to")}</option>
      ${agents.map((u) => html`<option value=${u.id}>${u.name} (${t("presence." + u.status)}, ${loads[u.id] || 0}/${u.max_concurrent_chats})</option>`)}
    </select>
    <button type="submit" disabled=${!userId}>${t("sup.assign")}</button>
    ${error && html`<span class="error" role="alert">${error}</span>`}
  </form>`;
}

export function Supervisor({ me }) {
  const [queue, setQueue] = useState([]);
  const [agents, setAgents] = useState([]);
  const [loads, setLoads] = useState({});
  const scope = me.permissions.includes("conversations.read_all") ? "all" : "departments";
  const canAssign = me.permissions.includes("conversations.assign");
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
      <ul class="queue">${queue.map((c) => html`<li key=${c.id} data-id=${c.id}><a href=${`#/c/${c.id}`}>${c.contact.name || c.contact.phone}</a>
        <small>${c.department ? c.department.name : ""} · ${fmtTime(c.queued_at || c.opened_at)}</small>
        ${canAssign && html`<${AssignForm} conv=${c} agents=${agents} loads=${loads} onDone=${load} />`}</li>`)}</ul></section>
    <section><h2>${t("sup.agents")}</h2>
      <table><thead><tr><th scope="col">${t("sup.name")}</th><th scope="col">${t("sup.status")}</th><th scope="col">${t("sup.load")}</th></tr></thead>
        <tbody>${agents.map((u) => html`<tr key=${u.id} data-user=${u.id}><td>${u.name}</td>
          <td><span class=${`dot ${u.status}`}></span>${t("presence." + u.status)}</td>
          <td>${loads[u.id] || 0} / ${u.max_concurrent_chats}</td></tr>`)}</tbody></table></section>
  </main>`;
}

/** One input per property of a credentials JSON Schema (pydantic's), typed by it. */
function schemaFields(schema) {
  const required = new Set(schema.required || []);
  return Object.entries(schema.properties || {}).map(([name, prop]) => {
    const options = prop.anyOf ? prop.anyOf.filter((o) => o.type !== "null") : [prop];
    const base = options[0] || {};
    const type = base.enum ? "enum" : base.type === "boolean" ? "boolean"
      : base.type === "integer" || base.type === "number" ? "number"
      : base.format === "password" || base.writeOnly ? "secret" : "text";
    return { name, type, title: prop.title || name, help: prop.description || "", enum: base.enum,
      required: required.has(name), default: prop.default };
  });
}

function CredentialInput({ field, value, onChange }) {
  const id = `cred-${field.name}`;
  let input;
  if (field.type === "boolean")
    input = html`<input id=${id} name=${field.name} type="checkbox" checked=${!!value} onChange=${(e) => onChange(e.target.checked)} />`;
  else if (field.type === "enum")
    input = html`<select id=${id} name=${field.name} value=${value ?? ""} onChange=${(e) => onChange(e.target.value)}>
      ${field.enum.map((v) => html`<option value=${v}>${v}</option>`)}</select>`;
  else
    input = html`<input id=${id} name=${field.name} required=${field.required}
      type=${field.type === "secret" ? "password" : field.type === "number" ? "number" : "text"}
      autocomplete="off" value=${value ?? ""} onInput=${(e) => onChange(e.target.value)} />`;
  return html`<label for=${id}>${field.title}${field.required ? " *" : ""}${input}
    ${field.help && html`<small>${field.help}</small>`}</label>`;
}

function AddChannelDialog({ types, onClose }) {
  const [type, setType] = useState(types[0] ? types[0].type : "");
  const [name, setName] = useState("");
  const [phone, setPhone] = useState("");
  const [departmentId, setDepartmentId] = useState("");
  const [departments, setDepartments] = useState([]);
  const [creds, setCreds] = useState({});
  const [error, setError] = useState("");
  useEffect(() => { api("GET", "/api/v1/departments?limit=200").then((p) => setDepartments(p.items)).catch(() => {}); }, []);
  const spec = types.find((x) => x.type === type);
  const fields = spec ? schemaFields(spec.credentials_schema) : [];
  async function submit(e) {
    e.preventDefault();
    const credentials = {};
    for (const f of fields) {
      const v = creds[f.name];
      if (v === undefined || v === "") continue;
      credentials[f.name] = f.type === "number" ? Number(v) : v;
    }
    const body = { type, name, credentials };
    if (phone.trim()) body.phone = phone.trim();
    if (departmentId) body.default_department_id = departmentId;
    try { const created = await api("POST", "/api/v1/channels", { body }); onClose(created); }
    catch (err) { setError(err.message + (err.details ? ` ${JSON.stringify(err.details)}` : "")); }
  }
  return html`<${Dialog} title=${t("ch.add")} onClose=${() => onClose(null)}>
    <form onSubmit=${submit} class="stack">
      <label>${t("ch.type")}<select name="type" value=${type} onChange=${(e) => { setType(e.target.value); setCreds({}); }}>
        ${types.map((x) => html`<option value=${x.type}>${x.type} — ${x.description}</option>`)}</select></label>
      <label>${t("ch.name")} *<input name="name" required value=${name} onInput=${(e) => setName(e.target.value)} /></label>
      <label>${t("ch.phone")}<input name="phone" type="tel" value=${phone} onInput=${(e) => setPhone(e.target.value)} /></label>
      <label>${t("ch.department")}<select name="default_department_id" value=${departmentId} onChange=${(e) => setDepartmentId(e.target.value)}>
        <option value="">${t("transfer.none")}</option>
        ${departments.map((d) => html`<option value=${d.id}>${d.name}</option>`)}</select></label>
      <fieldset><legend>${t("ch.credentials")}</legend>
        ${fields.map((f) => html`<${CredentialInput} key=${type + f.name} field=${f} value=${creds[f.name]}
          onChange=${(v) => setCreds((c) => ({ ...c, [f.name]: v }))} />`)}</fieldset>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <div class="row"><button type="submit">${t("ch.create")}</button>
        <button type="button" onClick=${() => onClose(null)}>${t("cancel")}</button></div>
    </form></${Dialog}>`;
}

/** Linking a phone by QR (Evolution, Baileys): the plugin's
 *  `GET /api/v1/plugins/<plugin>/channels/{id}/qrcode`, read again on every state or
 *  `channel.qr` event for the channel and every 15 s, until it says connected. */
function QrDialog({ channel, plugin, onClose }) {
  const [qr, setQr] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    let gone = false;
    const load = () => api("GET", `/api/v1/plugins/${plugin}/channels/${channel.id}/qrcode`)
      .then((answer) => { if (!gone) { setQr(answer); setError(""); } })
      .catch((err) => { if (!gone) setError(err.message); });
    load();
    const timer = setInterval(load, 15_000);
    const off = bus.on((ev) => {
      if ((ev.type === "channel.state" || ev.type === "channel.qr") && ev.data && ev.data.channel_id === channel.id) load();
    });
    return () => { gone = true; clearInterval(timer); off(); };
  }, [channel.id]);
  return html`<${Dialog} title=${`${t("ch.link")} — ${channel.name}`} onClose=${onClose}>
    <div class="stack qr">
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${qr && qr.state === "connected" && html`<p class="ok" role="status">${t("ch.connected")}</p>`}
      ${qr && qr.qr_code && qr.state !== "connected" && html`<img class="qr-code" alt=${t("ch.scan")} src=${`data:image/png;base64,${qr.qr_code}`} />
        <p>${t("ch.scan")}</p>`}
      ${qr && qr.pairing_code && html`<p>${t("ch.pairing")}: <strong class="pairing">${qr.pairing_code}</strong></p>`}
      ${qr && !qr.qr_code && qr.state !== "connected" && html`<p role="status">${qr.state}${qr.detail ? ` — ${qr.detail}` : ""}</p>`}
      <button type="button" onClick=${onClose}>${t("ch.done")}</button>
    </div></${Dialog}>`;
}

export function Channels({ me }) {
  const [channels, setChannels] = useState([]);
  const [types, setTypes] = useState([]);
  const [adding, setAdding] = useState(false);
  const [linking, setLinking] = useState(null);
  const load = debounce(() => allPages("/api/v1/channels").then(setChannels).catch(() => {}), 100);
  useEffect(() => {
    load();
    api("GET", "/api/v1/channel-types").then((p) => setTypes(p.items)).catch(() => {});
    return bus.on((ev) => { if (ev.type === "channel.state" || ev.type === "resynced") load(); });
  }, []);
  const typeOf = (c) => types.find((x) => x.type === c.type);
  const manage = me.permissions.includes("channels.manage");
  return html`<main class="page channels"><h2>${t("nav.channels")}</h2>
    ${manage && types.length > 0 && html`<button type="button" onClick=${() => setAdding(true)}>${t("ch.add")}</button>`}
    <table><thead><tr><th scope="col">${t("ch.name")}</th><th scope="col">${t("ch.type")}</th><th scope="col">${t("ch.state")}</th><th scope="col"><span class="sr-only">${t("ch.actions")}</span></th></tr></thead>
      <tbody>${channels.map((c) => html`<tr key=${c.id} data-channel=${c.id}><td>${c.name}${c.phone ? ` (${c.phone})` : ""}</td>
        <td>${c.type}</td><td class=${`state ${c.state}`}>${c.state}${c.state_detail ? ` — ${c.state_detail}` : ""}</td>
        <td>${typeOf(c) && typeOf(c).capabilities.includes("qr_session") && c.is_active
          && html`<button type="button" onClick=${() => setLinking(c)}>${t("ch.link")}</button>`}</td></tr>`)}</tbody></table>
    ${adding && html`<${AddChannelDialog} types=${types} onClose=${(created) => { setAdding(false); load(); if (created && typeOf(created) && typeOf(created).capabilities.includes("qr_session")) setLinking(created); }} />`}
    ${linking && html`<${QrDialog} channel=${linking} plugin=${typeOf(linking).plugin} onClose=${() => { setLinking(null); load(); }} />`}
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
