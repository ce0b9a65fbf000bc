// The campaigns plugin's console page: the company's campaigns with their status and
// live progress (`campaign.progress` / `campaign.updated` update the row in place).
const WORDS = {
  en: { name: "Campaign", status: "Status", progress: "Sent / total", empty: "No campaigns yet." },
  "pt-BR": { name: "Campanha", status: "Situação", progress: "Enviadas / total", empty: "Nenhuma campanha ainda." },
};
const DONE = ["sent", "delivered", "read", "replied"];

function tally(counts) {
  if (!counts) return "";
  const all = Object.values(counts).reduce((a, b) => a + b, 0);
  const sent = DONE.reduce((a, key) => a + (counts[key] || 0), 0);
  return `${sent} / ${all}`;
}

export default function mount(element, console) {
  const words = WORDS[console.lang] || WORDS.en;
  const table = document.createElement("table");
  table.className = "campaigns";
  const head = document.createElement("tr");
  for (const key of ["name", "status", "progress"]) {
    const cell = document.createElement("th");
    cell.textContent = words[key];
    head.append(cell);
  }
  const body = document.createElement("tbody");
  table.append(head, body);
  element.append(table);
  const rows = new Map();

  function row(campaign) {
    let tr = rows.get(campaign.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.campaign = campaign.id;
      tr.append(document.createElement("td"), document.createElement("td"), document.createElement("td"));
      rows.set(campaign.id, tr);
      body.append(tr);
    }
    const [name, status, progress] = tr.children;
    if (campaign.name) name.textContent = campaign.name;
    if (campaign.status) status.textContent = campaign.status;
    if (campaign.counts) progress.textContent = tally(campaign.counts);
  }

  async function load() {
    const page = await console.api("GET", "/api/v1/plugins/campaigns/campaigns?limit=100");
    if (page.items.length === 0) body.replaceChildren(Object.assign(document.createElement("tr"), { textContent: words.empty }));
    for (const campaign of page.items) {
      row(campaign);
      console.api("GET", `/api/v1/plugins/campaigns/campaigns/${campaign.id}`).then(row).catch(() => {});
    }
  }
  load().catch(() => {});
  const off = console.onEvent((event) => {
    if (!event.type.startsWith("campaign.")) return;
    const id = event.data.campaign_id;
    if (!rows.has(id)) { load().catch(() => {}); return; }
    row({ id, status: event.data.status, counts: event.data.counts });
  });
  return () => { off(); table.remove(); };
}
