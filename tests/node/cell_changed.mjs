// For each stdin line [a, b]: does a real TinyBase Store see setting cell b over cell a
// as a change? The reference for partywidget.jsvalue.cells_equal.
//
// The Python test writes the pair with its own json.dumps (independent of the code under
// test). The answer is {"ok": {"stored": bool, "changed": bool}} or {"error": msg};
// "stored" says whether TinyBase accepted a as a cell at all.
import {createInterface} from 'node:readline';
import {createStore} from 'tinybase';

const store = createStore();
let fired = 0;
store.addCellListener('t', 'r', 'c', () => fired++);

const lines = createInterface({input: process.stdin, crlfDelay: Infinity});
for await (const line of lines) {
  let answer;
  try {
    const [a, b] = JSON.parse(line);
    store.delTables();
    store.setCell('t', 'r', 'c', a);
    const stored = store.hasCell('t', 'r', 'c');
    fired = 0;
    store.setCell('t', 'r', 'c', b);
    answer = {ok: {stored, changed: fired > 0}};
  } catch (error) {
    answer = {error: String(error)};
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
