// Wire encoding shared with Python (partywidget.codec): inside Changes, TinyBase's
// `undefined` (deleted) travels as U+FFFC and object/array cells as U+FFFD + JSON, exactly
// as on the PartyKit wire, so one decoder serves the room and the kernel.
import type { Changes, Content } from "tinybase/store";

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
