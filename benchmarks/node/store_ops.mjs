// Store micro-benchmarks on the real TinyBase 10, the yardstick for partywidget.Store.
//
// Why: the Python Store re-implements TinyBase's bookkeeping (change maps, listener
// trees), so its cost per setCell is best judged against TinyBase doing the same loop.
// Run by benchmarks/store_ops.py in the same session; prints one JSON object:
// {"figure": {"ops": n, "seconds": best, "ops_per_s": n / best}, ...}.
// Usage: node store_ops.mjs [ops] [rounds]
import {createStore} from 'tinybase';

const ops = Number(process.argv[2] ?? 200000);
const rounds = Number(process.argv[3] ?? 5);

// A Store with one wildcard cell listener that counts its calls (reported, so that a
// reader can check both sides did the same work).
const freshStore = () => {
  const store = createStore();
  const calls = [0];
  store.addCellListener(null, null, null, () => calls[0]++);
  return [store, calls];
};

// Each setCell is its own transaction: the per-call cost users see.
const setCellWithListener = (store, n) => {
  for (let i = 0; i < n; i++) store.setCell('t', 'r' + (i % 100), 'c', i);
};

// All setCells in one transaction: bookkeeping only, listeners once per cell at the end.
const setCellInTransaction = (store, n) =>
  store.transaction(() => {
    for (let i = 0; i < n; i++) store.setCell('t', 'r' + (i % 100), 'c', i);
  });

const measure = (body) => {
  body(freshStore()[0], Math.min(ops, 10000)); // warm the JIT
  let best = Infinity;
  let listenerCalls = 0;
  for (let round = 0; round < rounds; round++) {
    const [store, calls] = freshStore();
    const start = process.hrtime.bigint();
    body(store, ops);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    best = Math.min(best, seconds);
    listenerCalls = calls[0];
  }
  return {ops, seconds: best, ops_per_s: ops / best, listener_calls: listenerCalls};
};

process.stdout.write(
  JSON.stringify({
    set_cell_with_listener: measure(setCellWithListener),
    set_cell_in_transaction: measure(setCellInTransaction),
  }) + '\n',
);
