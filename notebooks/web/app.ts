// A plain TinyBase web app -- no partywidget code at all -- in the notebook's room.
//
// It uses the npm packages exactly as any TinyBase + PartyKit app would (tinybase's
// createStore and createPartyKitPersister, partysocket's PartySocket), bundled from the
// repo's node_modules by esbuild (webapp.py builds it; no CDN). If the notebook's
// DataFrame and this page show the same todos, the Python and JavaScript sides share one
// Store through the room.
//
// URL parameters: ?host=127.0.0.1:1999&room=todos

import PartySocket from "partysocket";
import { createStore } from "tinybase";
import { createPartyKitPersister } from "tinybase/persisters/persister-partykit-client";

const TABLE = "todos";

const params = new URLSearchParams(location.search);
const host = params.get("host") ?? "127.0.0.1:1999";
const room = params.get("room") ?? "todos";

const store = createStore();
const socket = new PartySocket({ host, room });
// The room server on a laptop speaks plain http; a deployed PartyKit project https.
const isLocal = /^(localhost|127\.|\[::1\])/.test(host);
const persister = createPartyKitPersister(store, socket, isLocal ? "http" : "https");

// Exposed for curious users (and the tests): the page's own TinyBase Store.
declare global {
  interface Window {
    partyStore?: typeof store;
  }
}

const byId = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`#${id} missing from index.html`);
  return element as T;
};

const list = byId<HTMLUListElement>("todos");
const status = byId<HTMLSpanElement>("status");
byId<HTMLElement>("room").textContent = room;

const setStatus = (text: string): void => {
  status.textContent = text;
  status.dataset.status = text;
};
socket.addEventListener("open", () => setStatus("connected"));
socket.addEventListener("close", () => setStatus("offline"));

// Re-render the (small) list on every change: simple and fast enough for a demo.
const render = (): void => {
  const items = store.getRowIds(TABLE).map((rowId) => {
    const item = document.createElement("li");
    item.dataset.row = rowId;
    const done = store.getCell(TABLE, rowId, "done") === true;
    item.classList.toggle("done", done);

    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = done;
    box.addEventListener("change", () => store.setCell(TABLE, rowId, "done", box.checked));

    const text = document.createElement("span");
    text.className = "text";
    text.textContent = String(store.getCell(TABLE, rowId, "text") ?? "");

    const remove = document.createElement("button");
    remove.className = "remove";
    remove.textContent = "✕";
    remove.title = "delete";
    remove.addEventListener("click", () => store.delRow(TABLE, rowId));

    item.append(box, text, remove);
    return item;
  });
  list.replaceChildren(...items);
};
store.addTablesListener(render);

byId<HTMLFormElement>("add").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = byId<HTMLInputElement>("text");
  const text = input.value.trim();
  if (text === "") return;
  // Our own id, not addRow's 0, 1, 2...: other clients may be adding rows at once.
  const rowId = `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  store.setRow(TABLE, rowId, { text, done: false });
  input.value = "";
});

window.partyStore = store;
await persister.startAutoPersisting();
render();
