// The workspace console: Runtimes, Workers, a Worker's live stream and
// transcript, input, cancel and stop, over the browser API of the same
// origin (docs/console.md). Plain module, no dependencies; the DOM is built
// with textContent only, never from HTML strings.

const REFRESH_SECONDS = 3;
const TRANSCRIPT_PAGE = 500;
const ENDED = new Set(["completed", "cancelled", "failed", "interrupted"]);

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// -- the browser API ------------------------------------------------------

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    setConnection("offline");
    throw new ApiError(0, "network_error", "the workspace cannot be reached");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (error) {
    data = null;
  }
  if (!response.ok) {
    const envelope = data && typeof data.error === "object" && data.error;
    const code = envelope ? envelope.code : String((data && data.error) || response.status);
    const message = envelope ? envelope.message : (data && data.message) || response.statusText;
    if (response.status === 401) showSignIn();
    throw new ApiError(response.status, code, message);
  }
  setConnection("live");
  return data;
}

const enc = encodeURIComponent;
const workerPath = (runtimeId, workerId) =>
  `/api/runtimes/${enc(runtimeId)}/workers/${enc(workerId)}`;

// -- small helpers ----------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function pill(status) {
  return el("span", { class: `pill ${status}` }, status);
}

function tokens(usage) {
  if (!usage) return "–";
  return `${usage.input_tokens} / ${usage.output_tokens}`;
}

function notice(message) {
  const box = $("notice");
  box.textContent = message || "";
  box.hidden = !message;
}

function setConnection(state) {
  const node = $("connection");
  node.className = `pill ${state}`;
  node.textContent = state;
}

// -- session ---------------------------------------------------------------

let signedIn = false;

function showSignIn() {
  signedIn = false;
  closeStream();
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("caller").textContent = "";
  $("sign-in").hidden = false;
  setConnection("signed-out");
}

function showConsole(session) {
  signedIn = true;
  $("sign-in").hidden = true;
  $("console").hidden = false;
  $("caller").textContent = session.caller;
  // In `none` mode every request is the caller `local`: nothing to sign out of.
  $("sign-out").hidden = session.caller === "local";
}

async function checkSession() {
  try {
    showConsole(await api("GET", "/api/session"));
  } catch (error) {
    if (error.status !== 401) notice(`Cannot reach the workspace: ${error.message}`);
    return;
  }
  await refresh();
}

async function signIn(event) {
  event.preventDefault();
  const field = $("sign-in-token");
  const token = field.value.trim();
  field.value = ""; // the page does not keep the token
  $("sign-in-error").hidden = true;
  try {
    showConsole(await api("POST", "/api/session", undefined, { Authorization: `Bearer ${token}` }));
  } catch (error) {
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = error.status === 401 ? "That token was not accepted." : error.message;
    $("sign-in-error").hidden = false;
    return;
  }
  notice("");
  await refresh();
}

async function signOut() {
  try {
    await api("DELETE", "/api/session");
  } finally {
    selected = null;
    $("worker-panel").hidden = true;
    showSignIn();
  }
}

// -- Runtimes and Workers --------------------------------------------------

let runtimes = []; // RuntimeView objects
let workers = []; // WorkerView objects
let refreshing = false;
let refreshAgain = false; // asked for while one was under way

async function refresh() {
  if (!signedIn) return;
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  try {
    const listing = await api("GET", "/api/runtimes");
    const ids = listing.items.map((item) => item.runtime_id);
    const views = await Promise.all(ids.map((id) => describeRuntime(id)));
    const pages = await Promise.all(views.map((view) => listWorkers(view)));
    runtimes = views;
    workers = pages.flat();
    renderRuntimes();
    renderWorkers();
    renderCreateForm();
    if (selected) {
      const fresh = workers.find((w) => sameWorker(w, selected.worker));
      if (fresh) updateWorker(fresh);
    }
  } catch (error) {
    if (error.status !== 401) notice(`Refresh failed: ${error.message}`);
  } finally {
    refreshing = false;
    if (refreshAgain) {
      refreshAgain = false;
      refresh();
    }
  }
}

async function describeRuntime(runtimeId) {
  try {
    return (await api("GET", `/api/runtimes/${enc(runtimeId)}`)).runtime;
  } catch (error) {
    if (error.status === 401) throw error;
    return { runtime_id: runtimeId, kind: "?", status: "unavailable", authority: false, workers: {} };
  }
}

async function listWorkers(view) {
  if (view.status !== "serving" && view.status !== "read-only") return [];
  try {
    const page = await api("GET", `/api/runtimes/${enc(view.runtime_id)}/workers?limit=200`);
    return page.workers;
  } catch (error) {
    if (error.status === 401) throw error;
    return [];
  }
}

function renderRuntimes() {
  const body = $("runtimes").tBodies[0];
  body.replaceChildren(
    ...runtimes.map((view) => {
      const counts = Object.entries(view.workers || {})
        .filter(([, n]) => n > 0)
        .map(([status, n]) => `${n} ${status}`)
        .join(", ");
      return el(
        "tr",
        { "data-runtime-id": view.runtime_id },
        el("td", {}, view.runtime_id),
        el("td", {}, view.kind),
        el("td", {}, pill(view.status)),
        el("td", {}, counts || "none"),
        el("td", { class: "num" }, tokens(view.usage)),
      );
    }),
  );
}

const sameWorker = (a, b) => a.runtime_id === b.runtime_id && a.worker_id === b.worker_id;

function renderWorkers() {
  const body = $("workers").tBodies[0];
  body.replaceChildren(
    ...workers.map((worker) => {
      const row = el(
        "tr",
        { class: "worker-row", "data-worker-id": worker.worker_id, "data-runtime-id": worker.runtime_id },
        el("td", {}, worker.display_name || worker.worker_id),
        el("td", {}, worker.runtime_id),
        el("td", {}, worker.profile),
        el("td", {}, pill(worker.status)),
        el("td", { class: "num" }, worker.turns),
        el("td", { class: "num" }, tokens(worker.usage)),
      );
      if (selected && sameWorker(worker, selected.worker)) row.classList.add("selected");
      row.addEventListener("click", () => select(worker));
      return row;
    }),
  );
  $("workers-empty").hidden = workers.length > 0;
}

function renderCreateForm() {
  const choices = runtimes.filter((view) => view.authority && view.status === "serving");
  const runtimeSelect = $("create-runtime");
  const current = runtimeSelect.value;
  runtimeSelect.replaceChildren(...choices.map((view) => el("option", { value: view.runtime_id }, view.runtime_id)));
  if (choices.some((view) => view.runtime_id === current)) runtimeSelect.value = current;
  renderEngines();
  $("create").disabled = choices.length === 0;
}

function renderEngines() {
  const view = runtimes.find((v) => v.runtime_id === $("create-runtime").value);
  const engines = (view && view.capabilities && view.capabilities.engines) || [];
  const engineSelect = $("create-engine");
  const current = engineSelect.value;
  engineSelect.replaceChildren(
    el("option", { value: "" }, "default"),
    ...engines.map((engine) => el("option", { value: engine.name }, `${engine.name} (${engine.kind})`)),
  );
  if (engines.some((engine) => engine.name === current)) engineSelect.value = current;
}

async function createCompanion(event) {
  event.preventDefault();
  const runtimeId = $("create-runtime").value;
  const body = { profile: "companion" };
  const name = $("create-name").value.trim();
  if (name) body.display_name = name;
  if ($("create-engine").value) body.engine = $("create-engine").value;
  try {
    const { worker } = await api("POST", `/api/runtimes/${enc(runtimeId)}/workers`, body);
    notice("");
    $("create-name").value = "";
    await refresh();
    await select(worker);
  } catch (error) {
    notice(`Create failed: ${error.message}`);
  }
}

// -- one Worker: transcript, live stream, commands -------------------------

// { worker, entries: [{kind, turnId, text, status}], lastSeq, socket, retry }
let selected = null;

async function select(worker) {
  closeStream();
  selected = { worker, entries: [], lastSeq: 0, socket: null, retry: 0 };
  $("worker-panel").hidden = false;
  renderWorkers();
  updateWorker(worker);
  renderMessages();
  const mine = selected;
  try {
    // Transcript first, then the Worker's newest seq: the stream starts
    // there, and an answer that was running is completed by the transcript
    // read again when it ends.
    const entries = await readTranscript(worker);
    const fresh = (await api("GET", workerPath(worker.runtime_id, worker.worker_id))).worker;
    if (selected !== mine) return;
    mergeTranscript(entries);
    selected.lastSeq = fresh.last_seq;
    updateWorker(fresh);
    openStream();
  } catch (error) {
    if (selected === mine) notice(`Cannot open the Worker: ${error.message}`);
  }
}

async function readTranscript(worker) {
  const entries = [];
  let cursor = null;
  do {
    const query = `?limit=${TRANSCRIPT_PAGE}` + (cursor ? `&cursor=${enc(cursor)}` : "");
    const page = await api("GET", `${workerPath(worker.runtime_id, worker.worker_id)}/transcript${query}`);
    entries.push(...page.entries);
    cursor = page.next_cursor;
  } while (cursor);
  return entries;
}

function mergeTranscript(transcript) {
  // The transcript is authoritative for every turn it holds; turns it does
  // not hold yet came from the stream and are kept.
  const known = new Set(transcript.map((entry) => entry.turn_id));
  const entries = transcript.map((entry) => ({
    kind: entry.kind,
    turnId: entry.turn_id,
    text: entry.text,
    status: entry.status,
  }));
  for (const entry of selected.entries) {
    if (!known.has(entry.turnId)) entries.push(entry);
  }
  selected.entries = entries;
  renderMessages();
}

async function reloadTranscript() {
  const mine = selected;
  if (!mine) return;
  try {
    const entries = await readTranscript(mine.worker);
    if (selected === mine) mergeTranscript(entries);
  } catch (error) {
    if (selected === mine) notice(`Cannot read the transcript: ${error.message}`);
  }
}

function updateWorker(worker) {
  selected.worker = worker;
  const live = worker.status === "idle" || worker.status === "running";
  const authority = worker.kind !== "compat-local-pod";
  $("worker-title").textContent = worker.display_name || worker.worker_id;
  const status = $("worker-status");
  status.className = `pill ${worker.status}`;
  status.textContent = worker.status;
  $("worker-usage").textContent = `${worker.turns} turns · tokens in / out ${tokens(worker.usage)}`;
  const engine = worker.engine ? ` · engine ${worker.engine.name} (${worker.engine.model})` : "";
  const readOnly = authority ? "" : " · read-only";
  $("worker-meta").textContent = `${worker.runtime_id} / ${worker.worker_id} · ${worker.profile}${engine}${readOnly}`;
  $("send").disabled = !(authority && worker.status === "idle");
  $("input-text").disabled = !(authority && live);
  $("cancel").disabled = !(authority && worker.status === "running");
  $("stop").disabled = !(authority && live);
}

function entryOf(kind, turnId) {
  let entry = selected.entries.find((e) => e.kind === kind && e.turnId === turnId);
  if (!entry) {
    entry = { kind, turnId, text: "", status: "accepted" };
    selected.entries.push(entry);
  }
  return entry;
}

function renderMessages() {
  const box = $("messages");
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 20;
  box.replaceChildren(
    ...selected.entries.map((entry) => {
      const meta = entry.kind === "assistant" && entry.status !== "completed" ? entry.status : "";
      return el(
        "div",
        { class: `message ${entry.kind}`, "data-turn-id": entry.turnId, "data-status": entry.status },
        el("span", { class: "text" }, entry.text),
        ...(meta ? [el("span", { class: "meta" }, meta)] : []),
      );
    }),
  );
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function openStream() {
  const mine = selected;
  const status = mine.worker.status;
  if (mine.worker.kind === "compat-local-pod" || (status !== "idle" && status !== "running")) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const path = `${workerPath(mine.worker.runtime_id, mine.worker.worker_id)}/events?after=${mine.lastSeq}`;
  const socket = new WebSocket(`${scheme}://${location.host}${path}`);
  mine.socket = socket;
  socket.addEventListener("open", () => {
    mine.retry = 0;
  });
  socket.addEventListener("message", (message) => {
    if (selected !== mine) return;
    const frame = JSON.parse(message.data);
    for (const item of Array.isArray(frame) ? frame : [frame]) onItem(item);
    renderMessages();
  });
  socket.addEventListener("close", (event) => {
    if (selected !== mine || mine.socket !== socket) return;
    mine.socket = null;
    if (event.code === 1000) {
      refresh(); // the Worker stopped or failed: its stream ended
      return;
    }
    // Dropped (the backend restarting, the network): resume after the
    // last event seen.
    const delay = Math.min(10, 2 ** mine.retry) * 1000;
    mine.retry += 1;
    setTimeout(() => {
      if (selected === mine && signedIn && !mine.socket) openStream();
    }, delay);
  });
}

function closeStream() {
  if (selected && selected.socket) {
    const socket = selected.socket;
    selected.socket = null;
    socket.close();
  }
}

function onItem(item) {
  if (item.type === "stream.heartbeat") return;
  if (item.type === "stream.gap") {
    selected.lastSeq = item.resume_after;
    reloadTranscript();
    return;
  }
  if (typeof item.seq === "number") {
    if (item.seq <= selected.lastSeq) return;
    selected.lastSeq = item.seq;
  }
  const data = item.data || {};
  switch (item.type) {
    case "turn.accepted":
      entryOf("user", data.turn_id).text = data.input;
      entryOf("assistant", data.turn_id).status = "accepted";
      break;
    case "turn.started":
    case "turn.retrying":
      entryOf("assistant", data.turn_id).status = "running";
      break;
    case "turn.text_delta": {
      const entry = entryOf("assistant", data.turn_id);
      entry.text += data.text;
      entry.status = "running";
      break;
    }
    case "turn.completed":
    case "turn.cancelled":
    case "turn.failed":
    case "turn.interrupted":
      entryOf("assistant", data.turn_id).status = item.type.slice("turn.".length);
      if (data.error) entryOf("error", data.turn_id).text = data.error.message;
      // The transcript has the final text; usage moved.
      reloadTranscript();
      refresh();
      break;
    case "worker.status":
      updateWorker({ ...selected.worker, status: data.status });
      break;
    case "worker.stopped":
    case "worker.failed":
      updateWorker({ ...selected.worker, status: item.type.slice("worker.".length) });
      break;
    default:
      break;
  }
}

async function send(event) {
  event.preventDefault();
  const field = $("input-text");
  const text = field.value;
  if (!selected || !text.trim()) return;
  const { runtime_id, worker_id } = selected.worker;
  $("send").disabled = true;
  try {
    await api("POST", `${workerPath(runtime_id, worker_id)}/input`, { text });
    field.value = "";
    notice("");
  } catch (error) {
    notice(error.code === "worker_busy" ? "The Worker is busy with a turn: wait or cancel it." : `Send failed: ${error.message}`);
    updateWorker(selected.worker);
  }
}

async function command(name, body) {
  if (!selected) return;
  const { runtime_id, worker_id } = selected.worker;
  try {
    await api("POST", `${workerPath(runtime_id, worker_id)}/${name}`, body);
    notice("");
  } catch (error) {
    notice(`${name[0].toUpperCase()}${name.slice(1)} failed: ${error.message}`);
  }
  await refresh();
}

// -- wiring ----------------------------------------------------------------

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOut);
$("create-form").addEventListener("submit", createCompanion);
$("create-runtime").addEventListener("change", renderEngines);
$("input-form").addEventListener("submit", send);
$("input-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    if (!$("send").disabled) $("input-form").requestSubmit();
  }
});
$("cancel").addEventListener("click", () => command("cancel", { reason: "cancelled from the console" }));
$("stop").addEventListener("click", () => command("stop", { reason: "stopped from the console" }));
setInterval(() => {
  if (document.visibilityState === "visible") refresh();
}, REFRESH_SECONDS * 1000);

checkSession();
