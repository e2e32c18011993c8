// The view's half of the kernel <-> view protocol: pure (no DOM, no model), so it can be
// run and tested on its own. It mirrors partywidget/view.py, the kernel's half:
//
//   view -> kernel  {kind: "snapshot?", view}                                on render / after a gap
//   kernel -> view  {kind: "snapshot", to, sid, seq, part, parts, content}   chunked
//   kernel -> view  {kind: "changes", seq, changes}                          one per transaction
//   view -> kernel  {kind: "changes", view, seq, changes}                    one per local edit
//
// `seq` numbers each direction's stream; a delta that is not exactly last+1 makes the view
// ask for a new snapshot (the kernel does the same for a view's stream), so a lost or early
// message heals itself. A snapshot request restarts the numbering of the view's edits. Content and Changes travel encoded as on the PartyKit wire: inside
// them TinyBase's `undefined` (deleted) is U+FFFC and object/array cells are U+FFFD + JSON
// (partywidget.codec), so one decoder serves the room and the kernel.
import type { Changes, Content } from "tinybase/store";

// ---------------------------------------------------------------- message kinds

export const SNAPSHOT_REQUEST = "snapshot?";
export const SNAPSHOT = "snapshot";
export const CHANGES = "changes";

export type SnapshotRequest = { kind: typeof SNAPSHOT_REQUEST; view: string };
export type SnapshotPart = {
  kind: typeof SNAPSHOT;
  to: string | null;
  sid: string;
  seq: number;
  part: number;
  parts: number;
  content: string;
};
export type KernelChanges = { kind: typeof CHANGES; seq: number; changes: string };
export type ViewChanges = { kind: typeof CHANGES; view: string; seq: number; changes: string };
export type KernelMessage = SnapshotPart | KernelChanges;
export type ViewMessage = SnapshotRequest | ViewChanges;

// ---------------------------------------------------------------- wire encoding

export const DELETED = "\ufffc";
export const JSON_MARKER = "\ufffd";

export function decodeCell(wire: unknown): unknown {
  if (wire === DELETED) return undefined;
  if (typeof wire === "string" && wire.charAt(0) === JSON_MARKER) return JSON.parse(wire.slice(1));
  return wire;
}

export function encodeCell(cell: unknown): unknown {
  if (cell === undefined) return DELETED;
  if (cell !== null && typeof cell === "object") return JSON_MARKER + JSON.stringify(cell);
  return cell;
}

type Nested = { [id: string]: unknown };

function mapLevels(obj: unknown, depth: number, leaf: (v: unknown) => unknown): unknown {
  if (depth === 0) return leaf(obj);
  if (obj === DELETED || obj === undefined) return leaf(obj);
  const out: Nested = {};
  for (const [key, value] of Object.entries(obj as Nested)) out[key] = mapLevels(value, depth - 1, leaf);
  return out;
}

/** Decode '[tables,values,1]' into TinyBase Changes (undefined for deletions). */
export function decodeChanges(text: string): Changes {
  const [tables, values] = JSON.parse(text) as [Nested, Nested, 1];
  return [mapLevels(tables, 3, decodeCell), mapLevels(values, 1, decodeCell), 1] as Changes;
}

/** Decode '[tables,values]' into TinyBase Content. */
export function decodeContent(text: string): Content {
  const [tables, values] = JSON.parse(text) as [Nested, Nested];
  return [mapLevels(tables, 3, decodeCell), mapLevels(values, 1, decodeCell)] as Content;
}

/** Encode TinyBase Changes for the kernel, deletions as U+FFFC. */
export function encodeChanges(changes: Changes): string {
  const [tables, values] = changes as unknown as [Nested, Nested, 1];
  return JSON.stringify([mapLevels(tables, 3, encodeCell), mapLevels(values, 1, encodeCell), 1]);
}

/** Every (table, row, cell) a Changes object touches, for flashing remote edits. */
export function touchedCells(changes: Changes): Array<[string, string, string]> {
  const out: Array<[string, string, string]> = [];
  const tables = changes[0] as Nested;
  for (const [tableId, table] of Object.entries(tables)) {
    if (table === undefined) continue;
    for (const [rowId, row] of Object.entries(table as Nested)) {
      if (row === undefined) continue;
      for (const cellId of Object.keys(row as Nested)) out.push([tableId, rowId, cellId]);
    }
  }
  return out;
}

/** True when Changes change nothing (a transaction that set what was there). */
export function isEmptyChanges(changes: Changes): boolean {
  return Object.keys(changes[0]).length === 0 && Object.keys(changes[1]).length === 0;
}

// ---------------------------------------------------------------- the view's stream state

/** What the view must do, in order, after a message from the kernel. */
export type Step =
  | { kind: "send"; message: ViewMessage } // ask the kernel (a snapshot after a gap)
  | { kind: "progress"; part: number; parts: number } // a snapshot part arrived
  | { kind: "content"; content: Content } // replace the mirror with a full snapshot
  | { kind: "changes"; changes: Changes }; // apply one kernel transaction

type Row = Record<string, unknown>;

/** Merge a snapshot's parts: rows of one table may be split over several parts; the
 * values travel in part 0. */
export function mergeParts(parts: string[]): Content {
  const tables: Record<string, Record<string, Row>> = {};
  let values: Row = {};
  for (const [i, text] of parts.entries()) {
    const [partTables, partValues] = decodeContent(text) as unknown as [Record<string, Record<string, Row>>, Row];
    for (const [tableId, rows] of Object.entries(partTables)) Object.assign((tables[tableId] ??= {}), rows);
    if (i === 0) values = partValues;
  }
  return [tables, values] as unknown as Content;
}

/**
 * The view's end of the protocol: numbers its edits, reassembles chunked snapshots, holds
 * deltas that arrive while a snapshot loads, drops duplicates and asks for a new snapshot
 * on a gap. It returns Steps instead of touching a Store, so it can run anywhere.
 */
export class KernelLink {
  private lastSeq = -1; // kernel -> view stream; -1 = no snapshot yet
  private sendSeq = 0; // view -> kernel stream
  private awaiting: string | null = null; // id of the snapshot being received ("?" = asked)
  private pending: Array<{ seq: number; changes: string }> = [];
  private parts: string[] = [];
  private stray: string | null = null; // id of a snapshot whose first part was lost

  constructor(readonly viewId: string) {}

  /** True from asking for a snapshot until it is complete. */
  get loading(): boolean {
    return this.awaiting !== null;
  }

  /** The message asking for a (new) snapshot; deltas are held until it is complete. It
   * also restarts the numbering of our edits, as the kernel does when it receives it. */
  request(): SnapshotRequest {
    this.awaiting = "?";
    this.parts = [];
    this.sendSeq = 0;
    return { kind: SNAPSHOT_REQUEST, view: this.viewId };
  }

  /** The message carrying one local transaction to the kernel. */
  edit(changes: Changes): ViewChanges {
    this.sendSeq += 1;
    return { kind: CHANGES, view: this.viewId, seq: this.sendSeq, changes: encodeChanges(changes) };
  }

  /** What to do about one message from the kernel (nothing if it is not for us). */
  receive(msg: unknown): Step[] {
    if (msg === null || typeof msg !== "object") return [];
    const message = msg as KernelMessage;
    if (message.kind === SNAPSHOT) return this.receivePart(message);
    if (message.kind === CHANGES) return this.receiveChanges(message);
    return [];
  }

  private receivePart(msg: SnapshotPart): Step[] {
    if (msg.to !== null && msg.to !== undefined && msg.to !== this.viewId) return [];
    if (msg.part === 0) {
      this.awaiting = msg.sid;
      this.parts = [];
    } else if (msg.sid !== this.awaiting) {
      // A part of a snapshot we are not assembling. While we wait for an answer, it is
      // that answer without its first part: ask again (once per snapshot). Otherwise it
      // is a stale duplicate: ignore it.
      if (this.awaiting !== "?" || msg.sid === this.stray) return [];
      this.stray = msg.sid;
      return this.restart();
    } else if (this.parts.length !== msg.part) {
      return this.parts.length < msg.part ? this.restart() : []; // a part was lost / a duplicate
    }
    this.parts.push(msg.content);
    const steps: Step[] = [{ kind: "progress", part: msg.part + 1, parts: msg.parts }];
    if (this.parts.length === msg.parts) steps.push(...this.finishSnapshot(msg.seq));
    return steps;
  }

  private receiveChanges(msg: KernelChanges): Step[] {
    if (this.awaiting !== null) {
      this.pending.push({ seq: msg.seq, changes: msg.changes });
      // The kernel sends a snapshot's parts back to back: a delta in between means the
      // rest of the parts were lost.
      return this.parts.length > 0 ? this.restart() : [];
    }
    if (msg.seq === this.lastSeq + 1) {
      this.lastSeq = msg.seq;
      return [{ kind: "changes", changes: decodeChanges(msg.changes) }];
    }
    if (msg.seq > this.lastSeq + 1) {
      this.pending.push({ seq: msg.seq, changes: msg.changes });
      return this.restart(); // a delta went missing
    }
    return []; // an old duplicate, already contained in our state
  }

  /** Ask again for a snapshot whose parts did not all arrive. */
  private restart(): Step[] {
    return [{ kind: "send", message: this.request() }];
  }

  private finishSnapshot(seq: number): Step[] {
    const steps: Step[] = [{ kind: "content", content: mergeParts(this.parts) }];
    this.awaiting = null;
    this.parts = [];
    this.lastSeq = seq;
    const queued = this.pending.sort((a, b) => a.seq - b.seq);
    this.pending = [];
    for (const { seq: s, changes } of queued) {
      if (s <= this.lastSeq) continue;
      if (s !== this.lastSeq + 1) {
        steps.push({ kind: "send", message: this.request() });
        break;
      }
      this.lastSeq = s;
      steps.push({ kind: "changes", changes: decodeChanges(changes) });
    }
    return steps;
  }
}
