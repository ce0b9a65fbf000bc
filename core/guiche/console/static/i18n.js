// Two languages, chosen by the user (kept in localStorage) or else the browser.
const STRINGS = {
  en: {
    "app.title": "Guichê", "login.title": "Sign in", "login.email": "Email",
    "login.password": "Password", "login.submit": "Sign in", "login.failed": "Email or password is wrong.",
    "logout": "Log out", "company": "Company", "language": "Language",
    "presence": "Status", "presence.online": "Online", "presence.away": "Away", "presence.offline": "Offline",
    "nav.inbox": "Inbox", "nav.supervisor": "Supervisor", "nav.channels": "Channels",
    "cat.bot": "Bot", "cat.pending": "Pending", "cat.active": "Active", "cat.closed": "Closed",
    "scope": "Scope", "scope.mine": "Mine", "scope.departments": "My departments", "scope.all": "All",
    "search.contact": "Search by contact", "inbox.empty": "No conversations here.",
    "inbox.pick": "Pick a conversation.", "conv.load_older": "Load older messages",
    "conv.reply": "Reply", "conv.send": "Send", "conv.attach": "Attach a file",
    "conv.accept": "Accept", "conv.transfer": "Transfer", "conv.close": "Close",
    "conv.reopen": "Reopen", "conv.notes": "Notes", "conv.add_note": "Add note",
    "conv.contact": "Contact", "conv.past": "Past conversations", "conv.back": "Back",
    "conv.template": "Send a template", "conv.window_closed": "The 24-hour window is closed: send a template.",
    "transfer.agent": "Agent", "transfer.department": "Department", "transfer.note": "Note",
    "transfer.none": "— none —", "close.tabulation": "Tabulation", "close.confirm": "Close conversation",
    "cancel": "Cancel", "error": "Something went wrong", "offline": "Reconnecting…",
    "status.pending": "pending", "status.sent": "sent", "status.delivered": "delivered",
    "status.read": "read", "status.failed": "failed", "status.unknown": "unknown",
    "sup.queue": "Queue now", "sup.agents": "Agents", "sup.load": "Open chats", "sup.name": "Name",
    "sup.status": "Status", "ch.name": "Name", "ch.type": "Type", "ch.state": "State",
    "unread": "unread", "you": "You", "conv.region": "Conversation", "conv.file": "File", "sup.assign": "Assign", "sup.assign_to": "Assign to…", "conv.typing": "A colleague is typing…", "ch.add": "Add channel", "ch.phone": "Phone", "ch.department": "Default department", "ch.credentials": "Credentials", "ch.create": "Create", "ch.link": "Link phone", "ch.connected": "Connected.", "ch.scan": "Scan this code with WhatsApp on the phone (Linked devices).", "ch.pairing": "Pairing code", "ch.done": "Done", "ch.actions": "Actions", "download": "Download",
  },
  "pt-BR": {
    "app.title": "Guichê", "login.title": "Entrar", "login.email": "E-mail",
    "login.password": "Senha", "login.submit": "Entrar", "login.failed": "E-mail ou senha incorretos.",
    "logout": "Sair", "company": "Empresa", "language": "Idioma",
    "presence": "Status", "presence.online": "Online", "presence.away": "Ausente", "presence.offline": "Offline",
    "nav.inbox": "Atendimentos", "nav.supervisor": "Supervisão", "nav.channels": "Canais",
    "cat.bot": "Bot", "cat.pending": "Aguardando", "cat.active": "Em atendimento", "cat.closed": "Encerrados",
    "scope": "Escopo", "scope.mine": "Meus", "scope.departments": "Meus setores", "scope.all": "Todos",
    "search.contact": "Buscar por contato", "inbox.empty": "Nenhuma conversa aqui.",
    "inbox.pick": "Escolha uma conversa.", "conv.load_older": "Carregar mensagens anteriores",
    "conv.reply": "Responder", "conv.send": "Enviar", "conv.attach": "Anexar arquivo",
    "conv.accept": "Aceitar", "conv.transfer": "Transferir", "conv.close": "Encerrar",
    "conv.reopen": "Reabrir", "conv.notes": "Notas", "conv.add_note": "Adicionar nota",
    "conv.contact": "Contato", "conv.past": "Conversas anteriores", "conv.back": "Voltar",
    "conv.template": "Enviar modelo", "conv.window_closed": "A janela de 24 horas fechou: envie um modelo.",
    "transfer.agent": "Atendente", "transfer.department": "Setor", "transfer.note": "Observação",
    "transfer.none": "— nenhum —", "close.tabulation": "Tabulação", "close.confirm": "Encerrar conversa",
    "cancel": "Cancelar", "error": "Algo deu errado", "offline": "Reconectando…",
    "status.pending": "pendente", "status.sent": "enviada", "status.delivered": "entregue",
    "status.read": "lida", "status.failed": "falhou", "status.unknown": "incerta",
    "sup.queue": "Fila agora", "sup.agents": "Atendentes", "sup.load": "Conversas abertas", "sup.name": "Nome",
    "sup.status": "Status", "ch.name": "Nome", "ch.type": "Tipo", "ch.state": "Estado",
    "unread": "não lidas", "you": "Você", "conv.region": "Conversa", "conv.file": "Arquivo", "sup.assign": "Atribuir", "sup.assign_to": "Atribuir a…", "conv.typing": "Um colega está digitando…", "ch.add": "Adicionar canal", "ch.phone": "Telefone", "ch.department": "Setor padrão", "ch.credentials": "Credenciais", "ch.create": "Criar", "ch.link": "Conectar celular", "ch.connected": "Conectado.", "ch.scan": "Leia este código no WhatsApp do celular (Aparelhos conectados).", "ch.pairing": "Código de pareamento", "ch.done": "Concluir", "ch.actions": "Ações", "download": "Baixar",
  },
};
export const LANGUAGES = [["pt-BR", "Português (Brasil)"], ["en", "English"]];
const KEY = "guiche.lang";

function pick() {
  const saved = localStorage.getItem(KEY);
  if (saved && STRINGS[saved]) return saved;
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  for (const tag of wanted) if ((tag || "").toLowerCase().startsWith("pt")) return "pt-BR";
  return "en";
}

let lang = pick();
document.documentElement.lang = lang;

export const currentLang = () => lang;
export function setLang(next) {
  if (!STRINGS[next]) return;
  lang = next;
  localStorage.setItem(KEY, next);
  document.documentElement.lang = next;
}
export function t(key) {
  return STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
}
