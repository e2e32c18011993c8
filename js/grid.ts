// The grid: a TinyBase Store mirrors the kernel's Store; each table is a virtualised,
// editable grid reading straight from that mirror. What travels between the mirror and the
// kernel is decided by KernelLink (./protocol); this file only renders and edits.
//
// Only custom messages carry data, never synced traits: marimo re-runs cells when a trait
// changes from the front-end, and both JupyterLab and marimo deliver custom messages both
// ways (see the widget module's docstring). The `tables_schema` trait (kernel -> view)
// orders the columns like the kernel's DataFrames (schema order, then first seen) and
// types what is typed into a cell.
//
// Why a hand-written grid rather than a grid library: the mirror already is the row model
// (TinyBase Store with per-cell listeners), so the grid only needs to draw the visible
// window (O(visible rows) DOM, fixed row height) and redraw the cells a delta touched.
// Tabulator / AG Grid would keep a second copy of 100k rows, add hundreds of kB to the
// bundle and need their own change-detection wiring.
import { createStore, type Cell, type Changes, type Store, type Value } from "tinybase/store";
import { isEmptyChanges, KernelLink, touchedCells, type Step } from "./protocol";

/** The part of the anywidget model the grid uses. */
export type Model = {
  get(name: string): unknown;
  on(event: string, cb: (...args: never[]) => void): void;
  off(event?: string | null, cb?: ((...args: never[]) => void) | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: unknown[]): void;
};

const ROW_HEIGHT = 26;
const OVERSCAN = 8;
const FLASH_MS = 1200;
const MAX_FLASHES = 200;

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

function formatCell(value: unknown): string {
  if (value === undefined) return "";
  if (value === null) return "null";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function cellKind(value: unknown): string {
  if (value === null || value === undefined) return "empty";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Parse what the user typed, keeping the type the cell (or column) already has. */
function parseInput(text: string, previous: unknown, columnKind: string): unknown {
  if (text === "") return undefined;
  const kind = previous === undefined ? columnKind : cellKind(previous);
  if (kind === "number") {
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }
  if (kind === "boolean") {
    if (text === "true") return true;
    if (text === "false") return false;
    return text;
  }
  if (kind === "object" || kind === "array" || kind === "empty") {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

export class Grid {
  private readonly store: Store = createStore();
  private readonly link = new KernelLink(Math.random().toString(36).slice(2, 10));
  private applyingRemote = false;
  private flashes = new Map<string, number>();
  private current: string | null = null; // selected table
  private sortCell: string | null = null;
  private sortDesc = false;
  private order: string[] | null = null; // cached (sorted) row ids of current table
  private redrawQueued = false;
  private destroyed = false;
  private editing: HTMLInputElement | null = null;

  private readonly root = h("div", "partywidget");
  private readonly badge = h("span", "pw-badge");
  private readonly info = h("span", "pw-info");
  private readonly notice = h("div", "pw-notice");
  private readonly tabs = h("div", "pw-tabs");
  private readonly toolbar = h("div", "pw-toolbar");
  private readonly scroller = h("div", "pw-scroller");
  private readonly spacer = h("div", "pw-spacer");
  private readonly header = h("div", "pw-header");
  private readonly body = h("div", "pw-body");
  private readonly valuesPanel = h("div", "pw-values");
  private readonly onMsg = (msg: unknown) => this.receive(msg);
  private readonly onStatus = () => this.renderStatus();
  private readonly onSchema = () => this.queueRedraw();

  constructor(
    private readonly model: Model,
    el: HTMLElement,
  ) {
    const top = h("div", "pw-top");
    top.append(this.badge, this.info);
    const addRow = h("button", "pw-add-row", "+ row");
    addRow.title = "Add a row to this table";
    addRow.addEventListener("click", () => this.addRow());
    this.toolbar.append(addRow);
    this.scroller.append(this.header, this.spacer);
    this.spacer.append(this.body);
    const main = h("div", "pw-main");
    const tablesBox = h("div", "pw-tables");
    tablesBox.append(this.tabs, this.toolbar, this.scroller);
    const valuesBox = h("div", "pw-values-box");
    valuesBox.append(h("div", "pw-section", "values"), this.valuesPanel);
    main.append(tablesBox, valuesBox);
    this.root.append(top, this.notice, main);
    el.append(this.root);

    this.scroller.addEventListener("scroll", () => this.queueRedraw());
    this.store.addTablesListener(() => this.queueRedraw());
    this.store.addTableIdsListener(() => this.renderTabs());
    this.store.addRowIdsListener(null, (_s, tableId) => {
      if (tableId === this.current) this.order = null;
      this.renderTabs();
    });
    this.store.addCellListener(null, null, null, (_s, tableId, _r, cellId) => {
      if (tableId === this.current && cellId === this.sortCell) this.order = null;
    });
    this.store.addValuesListener(() => this.renderValues());
    this.store.addDidFinishTransactionListener(() => this.onLocalTransaction());

    model.on("msg:custom", this.onMsg);
    for (const name of ["status", "error", "notice", "host", "room", "read_only"])
      model.on(`change:${name}`, this.onStatus);
    model.on("change:tables_schema", this.onSchema);
    this.renderStatus();
    this.renderTabs();
    this.renderValues();
    this.requestSnapshot();
  }

  destroy(): void {
    this.destroyed = true;
    this.model.off("msg:custom", this.onMsg);
    for (const name of ["status", "error", "notice", "host", "room", "read_only"])
      this.model.off(`change:${name}`, this.onStatus);
    this.model.off("change:tables_schema", this.onSchema);
    this.store.delTables().delValues();
  }

  // ---------------------------------------------------------------- data path

  private requestSnapshot(): void {
    this.model.send(this.link.request());
    this.renderStatus();
  }

  private receive(msg: unknown): void {
    if (this.destroyed) return;
    for (const step of this.link.receive(msg)) this.perform(step);
  }

  private perform(step: Step): void {
    switch (step.kind) {
      case "send":
        this.model.send(step.message);
        this.renderStatus();
        break;
      case "progress":
        this.renderStatus(step.part, step.parts);
        break;
      case "content":
        this.applyingRemote = true;
        try {
          this.store.setContent(step.content);
        } finally {
          this.applyingRemote = false;
        }
        this.order = null;
        this.renderStatus();
        this.queueRedraw();
        break;
      case "changes":
        this.applyRemote(step.changes);
        break;
    }
  }

  private applyRemote(changes: Changes): void {
    const now = performance.now();
    // Flash what really changes here: not the echo of our own edits (already applied),
    // and not a bulk load (hundreds of yellow cells say nothing).
    const touched = touchedCells(changes);
    if (touched.length <= MAX_FLASHES) {
      const tables = changes[0] as Record<string, Record<string, Record<string, unknown>>>;
      for (const [t, r, c] of touched) {
        const next = tables[t][r][c];
        const now_ = this.store.getCell(t, r, c);
        if (JSON.stringify(now_) !== JSON.stringify(next)) this.flashes.set(`${t}\u0000${r}\u0000${c}`, now);
      }
    }
    this.applyingRemote = true;
    try {
      this.store.applyChanges(changes);
    } finally {
      this.applyingRemote = false;
    }
    this.queueRedraw();
    setTimeout(() => this.queueRedraw(), FLASH_MS + 50);
  }

  private onLocalTransaction(): void {
    if (this.applyingRemote) return;
    const changes = this.store.getTransactionChanges();
    if (isEmptyChanges(changes)) return;
    this.model.send(this.link.edit(changes));
  }

  // ---------------------------------------------------------------- rendering

  private get readOnly(): boolean {
    return Boolean(this.model.get("read_only"));
  }

  /** A string trait ("" when unset). */
  private text(name: string): string {
    const value = this.model.get(name);
    return typeof value === "string" ? value : "";
  }

  private renderStatus(part?: number, parts?: number): void {
    const status = this.text("status") || "connecting";
    const error = this.text("error");
    let label = status;
    if (this.link.loading) label = parts ? `loading ${Math.round((100 * (part ?? 0)) / parts)}%` : "loading";
    this.badge.textContent = label;
    this.badge.dataset.status = this.link.loading ? "loading" : status;
    this.badge.title = error;
    this.info.textContent = `${this.text("room")} @ ${this.text("host")}${
      this.readOnly ? " (read-only)" : ""
    }${error ? ` — ${error}` : ""}`;
    const notice = this.text("notice");
    this.notice.textContent = notice;
    this.notice.style.display = notice ? "" : "none";
  }

  private renderTabs(): void {
    const ids = this.store.getTableIds();
    if (this.current === null || !ids.includes(this.current)) {
      this.current = ids[0] ?? null;
      this.order = null;
      this.sortCell = null;
    }
    this.tabs.replaceChildren(
      ...ids.map((id) => {
        const tab = h("button", "pw-tab", `${id} (${this.store.getRowCount(id)})`);
        tab.dataset.table = id;
        if (id === this.current) tab.classList.add("pw-active");
        tab.addEventListener("click", () => {
          this.current = id;
          this.sortCell = null;
          this.order = null;
          this.scroller.scrollTop = 0;
          this.renderTabs();
          this.queueRedraw();
        });
        return tab;
      }),
    );
    if (ids.length === 0) this.tabs.append(h("span", "pw-empty", "no tables yet"));
    this.toolbar.style.display = this.current !== null && !this.readOnly ? "" : "none";
  }

  private renderValues(): void {
    const values = this.store.getValues();
    const rows = Object.entries(values).map(([id, value]) => {
      const row = h("div", "pw-value");
      row.dataset.value = id;
      const cell = h("span", "pw-value-cell", formatCell(value));
      row.append(h("span", "pw-value-id", id), cell);
      cell.addEventListener("dblclick", () =>
        this.startEdit(cell, formatCell(value), (text) => {
          const parsed = parseInput(text, value, cellKind(value));
          if (parsed === undefined) this.store.delValue(id);
          else this.store.setValue(id, parsed as Value);
        }),
      );
      return row;
    });
    this.valuesPanel.replaceChildren(...rows);
    if (rows.length === 0) this.valuesPanel.append(h("span", "pw-empty", "none"));
  }

  private queueRedraw(): void {
    if (this.redrawQueued || this.destroyed) return;
    this.redrawQueued = true;
    requestAnimationFrame(() => {
      this.redrawQueued = false;
      this.redraw();
    });
  }

  /** The kernel Store's schema for a table ({} without one); the mirror has none. */
  private schemaOf(tableId: string): Record<string, { type?: string }> {
    const schema = (this.model.get("tables_schema") ?? {}) as Record<string, Record<string, { type?: string }>>;
    return schema[tableId] ?? {};
  }

  /** Columns as the DataFrame has them: schema order first, then first-seen order. */
  private columns(tableId: string): string[] {
    const ordered = Object.keys(this.schemaOf(tableId));
    const seen = new Set(ordered);
    for (const cellId of this.store.getTableCellIds(tableId)) if (!seen.has(cellId)) ordered.push(cellId);
    return ordered;
  }

  private rowOrder(tableId: string): string[] {
    if (this.order === null) {
      this.order =
        this.sortCell === null
          ? this.store.getRowIds(tableId)
          : this.store.getSortedRowIds(tableId, this.sortCell, this.sortDesc);
    }
    return this.order;
  }

  private redraw(): void {
    if (this.editing !== null) return; // don't pull the input from under the user
    const tableId = this.current;
    if (tableId === null) {
      this.header.replaceChildren();
      this.body.replaceChildren();
      this.spacer.style.height = "0px";
      return;
    }
    const columns = this.columns(tableId);
    const order = this.rowOrder(tableId);
    const template = `28px minmax(80px, 1fr) ${columns.map(() => "minmax(90px, 1fr)").join(" ")}`;
    this.header.style.gridTemplateColumns = template;
    this.header.replaceChildren(
      h("div", "pw-hcell pw-del-col"),
      h("div", "pw-hcell pw-rowid", "row_id"),
      ...columns.map((cellId) => {
        const arrow = cellId === this.sortCell ? (this.sortDesc ? " ▼" : " ▲") : "";
        const cell = h("div", "pw-hcell", cellId + arrow);
        cell.dataset.cell = cellId;
        cell.title = "Sort";
        cell.addEventListener("click", () => this.toggleSort(cellId));
        return cell;
      }),
    );
    this.spacer.style.height = `${order.length * ROW_HEIGHT}px`;
    const viewport = this.scroller.clientHeight || 320;
    const top = Math.max(0, this.scroller.scrollTop - ROW_HEIGHT); // header row
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(order.length, Math.ceil((top + viewport) / ROW_HEIGHT) + OVERSCAN);
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    const now = performance.now();
    const kinds = new Map<string, string>();
    const rows: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      const rowId = order[i];
      const row = h("div", "pw-row");
      row.dataset.row = rowId;
      row.style.gridTemplateColumns = template;
      const del = h("button", "pw-del", "×");
      del.title = "Delete row";
      del.disabled = this.readOnly;
      del.addEventListener("click", () => this.store.delRow(tableId, rowId));
      row.append(h("div", "pw-cell pw-del-col"), h("div", "pw-cell pw-rowid", rowId));
      (row.firstChild as HTMLElement).append(del);
      for (const cellId of columns) {
        const value = this.store.getCell(tableId, rowId, cellId);
        const cell = h("div", `pw-cell pw-${cellKind(value)}`, formatCell(value));
        cell.dataset.cell = cellId;
        const flashedAt = this.flashes.get(`${tableId}\u0000${rowId}\u0000${cellId}`);
        if (flashedAt !== undefined) {
          if (now - flashedAt < FLASH_MS) cell.classList.add("pw-flash");
          else this.flashes.delete(`${tableId}\u0000${rowId}\u0000${cellId}`);
        }
        cell.addEventListener("dblclick", () => {
          if (this.readOnly) return;
          const previous = this.store.getCell(tableId, rowId, cellId);
          if (!kinds.has(cellId)) kinds.set(cellId, this.columnKind(tableId, cellId));
          this.startEdit(cell, formatCell(previous), (text) => {
            const parsed = parseInput(text, previous, kinds.get(cellId) ?? "string");
            if (parsed === undefined) this.store.delCell(tableId, rowId, cellId);
            else this.store.setCell(tableId, rowId, cellId, parsed as Cell);
          });
        });
        row.append(cell);
      }
      rows.push(row);
    }
    this.body.replaceChildren(...rows);
  }

  private columnKind(tableId: string, cellId: string): string {
    const typed = this.schemaOf(tableId)[cellId]?.type;
    if (typed) return typed;
    for (const rowId of this.store.getRowIds(tableId)) {
      const value = this.store.getCell(tableId, rowId, cellId);
      if (value !== undefined) return cellKind(value);
    }
    return "string";
  }

  private toggleSort(cellId: string): void {
    if (this.sortCell !== cellId) {
      this.sortCell = cellId;
      this.sortDesc = false;
    } else if (!this.sortDesc) {
      this.sortDesc = true;
    } else {
      this.sortCell = null;
    }
    this.order = null;
    this.queueRedraw();
  }

  private startEdit(cell: HTMLElement, text: string, commit: (text: string) => void): void {
    if (this.readOnly || this.editing !== null) return;
    const input = h("input", "pw-input");
    input.value = text;
    cell.replaceChildren(input);
    this.editing = input;
    let done = false;
    const finish = (save: boolean) => {
      if (done) return;
      done = true;
      this.editing = null;
      if (save && input.value !== text) commit(input.value);
      this.queueRedraw();
      this.renderValues();
    };
    input.addEventListener("keydown", (event) => {
      event.stopPropagation(); // keep Jupyter's shortcuts out of the editor
      if (event.key === "Enter") finish(true);
      else if (event.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
    input.focus();
    input.select();
  }

  private addRow(): void {
    const tableId = this.current;
    if (tableId === null || this.readOnly) return;
    const row: Record<string, Cell> = {};
    for (const cellId of this.columns(tableId)) {
      const kind = this.columnKind(tableId, cellId);
      row[cellId] = kind === "number" ? 0 : kind === "boolean" ? false : "";
    }
    if (Object.keys(row).length === 0) row.value = "";
    const rowId = `r${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    this.store.setRow(tableId, rowId, row);
    if (this.sortCell === null) this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
