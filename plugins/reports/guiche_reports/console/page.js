// The reports plugin's console page: today's indicators and the queue now, read from
// the plugin's own API (what the caller may see) and re-read on `dashboard.updated`.
const WORDS = {
  en: {
    today: "Finished today", duration: "Mean duration", waiting: "Mean waiting time",
    sla: "SLA met", queue: "Waiting now", oldest: "Oldest wait", online: "Agents online",
    cost: "Cloud API cost (24 h)", none: "—",
  },
  "pt-BR": {
    today: "Encerradas hoje", duration: "Duração média", waiting: "Espera média (TME)",
    sla: "SLA cumprido", queue: "Aguardando agora", oldest: "Maior espera",
    online: "Atendentes online", cost: "Custo Cloud API (24 h)", none: "—",
  },
};

function minutes(seconds) {
  if (seconds === null || seconds === undefined) return null;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return `${m}:${String(s).padStart(2, "0")}`;
}

export default function mount(element, console) {
  const words = WORDS[console.lang] || WORDS.en;
  const grid = document.createElement("dl");
  grid.className = "report-indicators";
  element.append(grid);

  function show(board) {
    const cost = (board.cloud_api_cost_24h || [])
      .map((c) => `${c.cost.toFixed(2)} ${c.currency}`).join(" + ");
    const rows = [
      ["today", board.today_conversations],
      ["duration", minutes(board.mean_duration_seconds)],
      ["waiting", minutes(board.mean_waiting_seconds)],
      ["sla", board.sla_pct === null ? null : `${board.sla_pct.toFixed(0)}%`],
      ["queue", board.queue.waiting],
      ["oldest", minutes(board.queue.oldest_wait_seconds)],
      ["online", board.queue.agents_online],
      ["cost", board.cloud_api_cost_24h === null ? null : cost || "0"],
    ];
    grid.replaceChildren(...rows.flatMap(([key, value]) => {
      const term = document.createElement("dt");
      term.textContent = words[key];
      const data = document.createElement("dd");
      data.dataset.indicator = key;
      data.textContent = value === null || value === undefined ? words.none : String(value);
      return [term, data];
    }));
  }

  const load = () => console.api("GET", "/api/v1/plugins/reports/dashboard").then(show);
  load().catch(() => {});
  const off = console.onEvent((event) => {
    if (event.type === "dashboard.updated") load().catch(() => {});
  });
  return () => { off(); grid.remove(); };
}
