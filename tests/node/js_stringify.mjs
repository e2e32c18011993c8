// Echoes JSON.stringify(JSON.parse(line)) for each stdin line: the reference for js_dumps.
//
// Why: partywidget.codec.js_dumps must be byte-identical to JavaScript's JSON.stringify.
// The Python test feeds values written by Python's own json.dumps (ASCII-only, so the
// transport does not depend on the code under test); V8 parses them into JavaScript
// values and stringifies them. Each answer is itself JSON-quoted on one line, so that
// the exact text (including escapes) survives the pipe: {"ok": text} or {"error": msg}.
import {createInterface} from 'node:readline';

const lines = createInterface({input: process.stdin, crlfDelay: Infinity});
for await (const line of lines) {
  let answer;
  try {
    answer = {ok: JSON.stringify(JSON.parse(line))};
  } catch (error) {
    answer = {error: String(error)};
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
