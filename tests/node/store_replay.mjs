// Replays operation programs on real TinyBase 10 Stores, for differential testing.
//
// Why: TinyBase's own behaviour is the specification of partywidget.Store. This process
// reads one JSON line per program on stdin, replays it on a fresh createStore() with
// wildcard listeners registered up front, and writes one JSON line back with, for each
// top-level op: its result, the content afterwards, getJson(), getSchemaJson() and
// JSON.stringify(getContent()) text, and the ordered log of every listener call. The
// Python side (tests/support/store_ops.py) replays the same program on our Store.
//
// Transport: JSON cannot carry `undefined` or -0, so both are tagged both ways:
// {"$undefined":true} and {"$negzero":true}; a thrown error is {"$error": name}, the
// Store itself "$store", a function "$fn". Listener arguments are encoded when the
// listener is called (see registerListeners).
//
// Request:  {"id": n, "program": [op, ...], "transactionLog": bool,
//            "listeners": null (all) or ["cell", "cell*", "didFinishTransaction", ...],
//            "reactions": [{"kind": "cell", "ids": [t, r, c], "mutator": bool, "ops": []}]}
// Response: {"id": n, "steps": [{result, content, json, contentJson, schemaJson, log}]}
//           or {"id": n, "fatal": "message"} if the harness itself failed.
import {createInterface} from 'node:readline';
import {createStore} from 'tinybase';

const UNDEFINED = {$undefined: true};
const STORE = '$store';
const FUNCTION = '$fn';

const isPlainObject = (x) => {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === null || proto === Object.prototype;
};

// Sets a key as an own enumerable property, so that "__proto__" stays an ordinary key.
const defineKey = (obj, key, value) =>
  Object.defineProperty(obj, key, {
    configurable: true,
    enumerable: true,
    writable: true,
    value,
  });

/** Turns wire tags back into `undefined` and -0, keeping keys such as __proto__. */
const decode = (x) => {
  if (Array.isArray(x)) return x.map(decode);
  if (isPlainObject(x)) {
    const keys = Object.keys(x);
    if (keys.length === 1 && keys[0] === '$undefined') return undefined;
    if (keys.length === 1 && keys[0] === '$negzero') return -0;
    const out = {};
    for (const key of keys) defineKey(out, key, decode(x[key]));
    return out;
  }
  return x;
};

/** Makes any value JSON-safe, tagging what JSON would lose or mangle. */
const encode = (x, store) => {
  if (x === undefined) return UNDEFINED;
  if (store !== undefined && x === store) return STORE;
  if (typeof x === 'function') return FUNCTION;
  if (typeof x === 'number') {
    if (Object.is(x, -0)) return {$negzero: true};
    if (!Number.isFinite(x)) return {$nonfinite: String(x)};
    return x;
  }
  if (Array.isArray(x)) {
    // Sparse arrays / holes come out as undefined, like JSON would not.
    const out = [];
    for (let i = 0; i < x.length; i++) out.push(encode(x[i], store));
    return out;
  }
  if (x instanceof Map) return {$map: [...x].map(([k, v]) => [encode(k), encode(v)])};
  if (x instanceof Set) return {$set: [...x].map((v) => encode(v))};
  if (x !== null && typeof x === 'object') {
    const out = {};
    for (const key of Object.keys(x)) defineKey(out, key, encode(x[key], store));
    return out;
  }
  return x;
};

// Sorted-row-Ids listeners need concrete table Ids. Must match store_ops.py.
const SORTED_ROW_IDS_SPECS = [
  ['t0', undefined, false, 0, undefined],
  ['t0', 'c0', false, 0, undefined],
  ['t1', 'c1', true, 1, 2],
  ['t0', 'c1', true, 0, undefined],
];

/**
 * Registers wildcard listeners of every (wanted) kind, logging kind + ids + arguments.
 *
 * Function arguments are resolved here so they can be compared: id-change getters are
 * called, getCellChange/getValueChange are called for the listener's own ids, and the
 * getCellChange passed to row/table/tables listeners is only noted as present.
 */
const registerListeners = (store, log, withTransactionLog, kinds) => {
  // kinds: null = every listener; else the kinds to register ('cell', 'cell*', ...).
  const wanted = (kind) => kinds == null || kinds.includes(kind);
  // Encoded at call time: TinyBase hands listeners live arrays (invalid cells) that it
  // may append to later in the same transaction.
  const record = (kind, resolve) => (_store, ...args) => {
    log.push(encode([kind, ...resolve(args)], store));
  };
  const callAll = (args) => args.map((a) => (typeof a === 'function' ? a() : a));
  const asIs = (args) => args.map((a) => (typeof a === 'function' ? FUNCTION : a));
  const cellChange = (args) => {
    const [t, r, c, n, o, get] = args;
    return [t, r, c, n, o, get === undefined ? undefined : get(t, r, c)];
  };
  const valueChange = (args) => {
    const [v, n, o, get] = args;
    return [v, n, o, get === undefined ? undefined : get(v)];
  };
  // [kind, method, wildcard Ids, argument resolver]
  const KINDS = [
    ['hasTables', 'addHasTablesListener', 0, asIs],
    ['tables', 'addTablesListener', 0, asIs],
    ['tableIds', 'addTableIdsListener', 0, callAll],
    ['hasTable', 'addHasTableListener', 1, asIs],
    ['table', 'addTableListener', 1, asIs],
    ['tableCellIds', 'addTableCellIdsListener', 1, callAll],
    ['hasTableCell', 'addHasTableCellListener', 2, asIs],
    ['rowCount', 'addRowCountListener', 1, asIs],
    ['rowIds', 'addRowIdsListener', 1, callAll],
    ['hasRow', 'addHasRowListener', 2, asIs],
    ['row', 'addRowListener', 2, asIs],
    ['cellIds', 'addCellIdsListener', 2, callAll],
    ['hasCell', 'addHasCellListener', 3, asIs],
    ['cell', 'addCellListener', 3, cellChange],
    ['invalidCell', 'addInvalidCellListener', 3, asIs],
    ['hasValues', 'addHasValuesListener', 0, asIs],
    ['values', 'addValuesListener', 0, asIs],
    ['valueIds', 'addValueIdsListener', 0, callAll],
    ['hasValue', 'addHasValueListener', 1, asIs],
    ['value', 'addValueListener', 1, valueChange],
    ['invalidValue', 'addInvalidValueListener', 1, asIs],
  ];
  for (const mutator of [false, true]) {
    const s = mutator ? '*' : '';
    for (const [kind, method, wildcards, resolve] of KINDS) {
      if (wanted(kind + s)) {
        const ids = new Array(wildcards).fill(null);
        store[method](...ids, record(kind + s, resolve), mutator);
      }
    }
    if (wanted('sortedRowIds' + s)) {
      for (const [t, c, d, o, l] of SORTED_ROW_IDS_SPECS) {
        store.addSortedRowIdsListener(t, c, d, o, l, record('sortedRowIds' + s, asIs), mutator);
      }
    }
  }
  if (wanted('startTransaction')) {
    store.addStartTransactionListener(() => log.push(encode(['startTransaction'])));
  }
  const finishEntry = (kind) => () => {
    const entry = [kind, store.getTransactionChanges()];
    if (withTransactionLog) entry.push(store.getTransactionLog());
    log.push(encode(entry, store));
  };
  if (wanted('willFinishTransaction')) {
    store.addWillFinishTransactionListener(finishEntry('willFinishTransaction'));
  }
  if (wanted('didFinishTransaction')) {
    store.addDidFinishTransactionListener(finishEntry('didFinishTransaction'));
  }
};

// Mapper functions for setCell/setValue: 'identity' returns the old cell, 'wrap' puts
// it in an array (null if absent: Python cannot put undefined in a list), 'const'
// ignores it.
const mapper = (a) =>
  ({
    identity: (old) => old,
    wrap: (old) => [old ?? null],
    const: () => ('cell' in a ? a.cell : a.value),
  })[a.mapper];

/** Runs one op; returns its raw result (may throw, as TinyBase does). */
const runOp = (store, op) => {
  const a = op;
  switch (op.op) {
    case 'setContent':
      return store.setContent(a.content);
    case 'setTables':
      return store.setTables(a.tables);
    case 'setTable':
      return store.setTable(a.tableId, a.table);
    case 'setRow':
      return store.setRow(a.tableId, a.rowId, a.row);
    case 'addRow':
      return 'reuseRowIds' in a
        ? store.addRow(a.tableId, a.row, a.reuseRowIds)
        : store.addRow(a.tableId, a.row);
    case 'setPartialRow':
      return store.setPartialRow(a.tableId, a.rowId, a.row);
    case 'setCell':
      return store.setCell(a.tableId, a.rowId, a.cellId, 'mapper' in a ? mapper(a) : a.cell);
    case 'setValues':
      return store.setValues(a.values);
    case 'setPartialValues':
      return store.setPartialValues(a.values);
    case 'setValue':
      return store.setValue(a.valueId, 'mapper' in a ? mapper(a) : a.value);
    case 'applyChanges':
      return store.applyChanges(a.changes);
    case 'setJson':
      return store.setJson(a.json);
    case 'setTablesJson':
      return store.setTablesJson(a.json);
    case 'setValuesJson':
      return store.setValuesJson(a.json);
    case 'setTablesSchema':
      return store.setTablesSchema(a.schema);
    case 'setValuesSchema':
      return store.setValuesSchema(a.schema);
    case 'setSchema':
      return store.setSchema(a.tablesSchema, a.valuesSchema);
    case 'delTables':
      return store.delTables();
    case 'delTable':
      return store.delTable(a.tableId);
    case 'delRow':
      return store.delRow(a.tableId, a.rowId);
    case 'delCell':
      return 'forceDel' in a
        ? store.delCell(a.tableId, a.rowId, a.cellId, a.forceDel)
        : store.delCell(a.tableId, a.rowId, a.cellId);
    case 'delValues':
      return store.delValues();
    case 'delValue':
      return store.delValue(a.valueId);
    case 'delTablesSchema':
      return store.delTablesSchema();
    case 'delValuesSchema':
      return store.delValuesSchema();
    case 'delSchema':
      return store.delSchema();
    case 'transaction': {
      const inner = [];
      const actions = () => {
        for (const child of a.ops) inner.push(runCaught(store, child));
        return inner.length;
      };
      const doRollback =
        a.rollback === undefined ? undefined : () => a.rollback;
      if (a.manual) {
        store.startTransaction();
        actions();
        store.finishTransaction(doRollback);
        return {manual: true, inner};
      }
      const result =
        doRollback === undefined
          ? store.transaction(actions)
          : store.transaction(actions, doRollback);
      return {result, inner};
    }
    case 'getSortedRowIds':
      if (a.form === 'object') {
        const args = {tableId: a.tableId};
        for (const key of ['cellId', 'descending', 'offset', 'limit']) {
          if (key in a) args[key] = a[key];
        }
        return store.getSortedRowIds(args);
      }
      return store.getSortedRowIds(a.tableId, a.cellId, a.descending, a.offset, a.limit);
    case 'getContent':
    case 'getTables':
    case 'getTableIds':
    case 'getValues':
    case 'getValueIds':
    case 'hasTables':
    case 'hasValues':
    case 'getJson':
    case 'getTablesJson':
    case 'getValuesJson':
    case 'getSchemaJson':
    case 'getTablesSchemaJson':
    case 'getValuesSchemaJson':
    case 'hasTablesSchema':
    case 'hasValuesSchema':
    case 'getTransactionChanges':
      return store[op.op]();
    case 'getTable':
    case 'getTableCellIds':
    case 'getRowCount':
    case 'getRowIds':
    case 'hasTable':
      return store[op.op](a.tableId);
    case 'hasTableCell':
      return store.hasTableCell(a.tableId, a.cellId);
    case 'getRow':
    case 'getCellIds':
    case 'hasRow':
      return store[op.op](a.tableId, a.rowId);
    case 'getCell':
    case 'hasCell':
      return store[op.op](a.tableId, a.rowId, a.cellId);
    case 'getValue':
    case 'hasValue':
      return store[op.op](a.valueId);
    default:
      throw new Error('harness: unknown op ' + op.op);
  }
};

/** Runs one op, turning a throw into {"$error": name} so programs go on. */
const runCaught = (store, op) => {
  try {
    return encode(runOp(store, op), store);
  } catch (error) {
    if (String(error?.message ?? '').startsWith('harness:')) throw error;
    return {$error: error?.name ?? 'Error'};
  }
};

// Reactions: listeners that run ops on the Store when called, registered after the
// logging listeners. Mutator ones may change the Store mid-transaction; in non-mutator
// ones TinyBase ignores changes. Their results are not logged; their effects are.
const REACTION_METHODS = {
  cell: ['addCellListener', 3],
  row: ['addRowListener', 2],
  table: ['addTableListener', 1],
  tables: ['addTablesListener', 0],
  value: ['addValueListener', 1],
  values: ['addValuesListener', 0],
};

const registerReactions = (store, reactions) => {
  for (const {kind, ids, mutator, ops} of reactions ?? []) {
    const [method, count] = REACTION_METHODS[kind];
    const path = [...ids, null, null, null].slice(0, count);
    store[method](
      ...path,
      () => {
        for (const op of ops) runCaught(store, op);
      },
      mutator,
    );
  }
};

const replay = (program, withTransactionLog, kinds, reactions) => {
  const store = createStore();
  const log = [];
  registerListeners(store, log, withTransactionLog, kinds);
  registerReactions(store, reactions);
  const steps = [];
  for (const op of program) {
    const result = runCaught(store, op);
    const entries = log.splice(0);
    steps.push({
      result,
      content: encode(store.getContent()),
      json: store.getJson(),
      contentJson: JSON.stringify(store.getContent()),
      schemaJson: store.getSchemaJson(),
      log: entries,
    });
  }
  return steps;
};

const lines = createInterface({input: process.stdin, crlfDelay: Infinity});
for await (const line of lines) {
  if (line.trim() === '') continue;
  let id = null;
  let reply;
  try {
    const request = JSON.parse(line);
    id = request.id ?? null;
    reply = {
      id,
      steps: replay(
        decode(request.program),
        !!request.transactionLog,
        request.listeners,
        decode(request.reactions),
      ),
    };
  } catch (error) {
    reply = {id, fatal: String(error?.stack ?? error)};
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
