// Benchmark driver: real TinyBase 10.0.1 clients (createPartyKitPersister over
// partysocket 1.3.0 + ws) for `python -m benchmarks`.
//
// Why a separate, lean driver (and not tests/node/peer.mjs): benchmarks must not pay a
// JSON-lines round trip per edit, nor record every message. Loops that are all-Node
// (JS -> JS latency, fan-out, burst) run inside one command; cross-language scenarios
// timestamp on both sides with CLOCK_MONOTONIC (Node's process.hrtime and Python's
// time.monotonic_ns read the same clock on Linux), so the pipe only paces the run and
// never enters a measured interval.
//
// Protocol: one JSON request per stdin line {id, cmd, ...}; one reply per stdout line
// {id, ok, result} or {id, ok: false, error}. Unsolicited events are lines without id:
// {event: "seen", client, value, t} from watchCell with notify=true.
// All times are microseconds of CLOCK_MONOTONIC (`now()` below).

import readline from 'node:readline';
import {readFileSync} from 'node:fs';
import WS from 'ws';
import {PartySocket} from 'partysocket';
import {createStore} from 'tinybase';
import {createPartyKitPersister} from 'tinybase/persisters/persister-partykit-client';

const now = () => Number(process.hrtime.bigint() / 1000n);
const write = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const clients = new Map();

const describe = (error) => {
  if (error instanceof Response) {
    return `HTTP ${error.status} from ${error.url}`;
  }
  if (error instanceof Error) {
    return `${error.name}: ${error.message}`;
  }
  return String(error?.message ?? error);
};

const getClient = (name) => {
  const client = clients.get(name);
  if (client === undefined) {
    throw new Error(`no client named ${name}`);
  }
  return client;
};

// Resolves when check() is true, re-checking on every finished transaction of `store`
// (and on socket close, so a closed connection fails fast instead of timing out).
const waitStore = (client, check, timeoutMs, what) =>
  new Promise((resolve, reject) => {
    if (check()) {
      resolve(now());
      return;
    }
    const store = client.store;
    let listenerId;
    const finish = (error) => {
      clearTimeout(timer);
      store.delListener(listenerId);
      client.onClose.delete(onClose);
      error ? reject(error) : resolve(now());
    };
    const onClose = (event) =>
      finish(new Error(`${client.name}: socket closed (code ${event.code}) while waiting for ${what}`));
    const timer = setTimeout(
      () => finish(new Error(`${client.name}: timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
    listenerId = store.addDidFinishTransactionListener(() => {
      if (check()) {
        finish();
      }
    });
    if (client.failOnClose) {
      client.onClose.add(onClose);
    }
  });

const connectOne = async ({
  name,
  host,
  room,
  load = true,
  save = true,
  openTimeoutMs = 30000,
}) => {
  if (clients.has(name)) {
    throw new Error(`client ${name} exists`);
  }
  const socket = new PartySocket({
    host,
    room,
    WebSocket: WS,
    minReconnectionDelay: 50,
    maxReconnectionDelay: 500,
  });
  const store = createStore();
  const client = {
    name,
    socket,
    store,
    errors: [],
    closes: [],
    opens: 0,
    onClose: new Set(),
    failOnClose: false,
    seen: new Map(),
  };
  clients.set(name, client);
  socket.addEventListener('close', (event) => {
    client.closes.push(event.code);
    for (const cb of [...client.onClose]) {
      cb(event);
    }
  });
  const opened = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name}: socket did not open in ${openTimeoutMs} ms`)),
      openTimeoutMs,
    );
    socket.addEventListener('open', () => {
      client.opens++;
      clearTimeout(timer);
      resolve();
    });
  });
  client.persister = createPartyKitPersister(store, socket, {storeProtocol: 'http'}, (error) =>
    client.errors.push(describe(error)),
  );
  try {
    await opened;
    if (load) {
      await client.persister.startAutoLoad();
    }
    if (save) {
      await client.persister.startAutoSave();
    }
  } catch (error) {
    await disconnectOne(name);
    throw error;
  }
  return client;
};

const disconnectOne = async (name) => {
  const client = clients.get(name);
  if (client === undefined) {
    return;
  }
  clients.delete(name);
  try {
    await client.persister?.destroy();
  } catch {
    // already gone
  }
  client.socket.close();
};

// Records, per client, the first time each value of one cell was seen.
const watch = (client, [tableId, rowId, cellId], notify) => {
  client.store.addCellListener(tableId, rowId, cellId, (_store, _t, _r, _c, value) => {
    const t = now();
    if (!client.seen.has(value)) {
      client.seen.set(value, t);
    }
    if (notify) {
      write({event: 'seen', client: client.name, value, t});
    }
  });
};

const cellCount = (store) => {
  let count = 0;
  for (const tableId of store.getTableIds()) {
    for (const rowId of store.getRowIds(tableId)) {
      count += store.getCellIds(tableId, rowId).length;
    }
  }
  return count;
};

const vmRssKiB = () => {
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) : null;
};

const CELL = ['t', 'r', 'c'];

const commands = {
  ping: async () => ({pid: process.pid, t: now()}),

  connect: async (request) => {
    const client = await connectOne({...request, name: request.client});
    return {cells: cellCount(client.store)};
  },

  // Many clients (fan-out readers / idle connections), `concurrency` at a time.
  connectMany: async ({prefix, count, host, room, concurrency = 50, watchCell = null}) => {
    const names = Array.from({length: count}, (_, i) => `${prefix}${i}`);
    for (let i = 0; i < names.length; i += concurrency) {
      await Promise.all(
        names.slice(i, i + concurrency).map(async (name) => {
          const client = await connectOne({name, host, room});
          if (watchCell) {
            watch(client, watchCell, false);
          }
        }),
      );
    }
    return {count};
  },

  disconnect: async ({client}) => {
    await disconnectOne(client);
    return null;
  },

  disconnectPrefix: async ({prefix}) => {
    const names = [...clients.keys()].filter((name) => name.startsWith(prefix));
    await Promise.all(names.map(disconnectOne));
    return {count: names.length};
  },

  watchCell: async ({client, cell = CELL, notify = false}) => {
    watch(getClient(client), cell, notify);
    return null;
  },

  // One local edit; returns when (CLOCK_MONOTONIC) it was made.
  setCell: async ({client, cell = CELL, value}) => {
    const store = getClient(client).store;
    const t = now();
    store.setCell(...cell, value);
    return {t};
  },

  // JS -> JS latency inside this process: A edits, B must see it before the next edit.
  latency: async ({writer, reader, count, timeoutMs = 30000, start = 0}) => {
    const a = getClient(writer);
    const b = getClient(reader);
    b.failOnClose = true;
    const samples = [];
    for (let i = start; i < start + count; i++) {
      const t0 = now();
      a.store.setCell(...CELL, i);
      const t1 = await waitStore(b, () => b.store.getCell(...CELL) === i, timeoutMs, `edit ${i}`);
      samples.push(t1 - t0);
    }
    return {samples};
  },

  // 1 writer -> every client whose name starts with `prefix` (watching CELL): for each
  // edit, the time until the last reader saw it, plus every reader's own latency.
  fanout: async ({writer, prefix, edits, timeoutMs = 60000, start = 0}) => {
    const w = getClient(writer);
    const readers = [...clients.values()].filter((c) => c.name.startsWith(prefix));
    const all = [];
    const each = [];
    for (let i = start; i < start + edits; i++) {
      const t0 = now();
      w.store.setCell(...CELL, i);
      const done = await Promise.all(
        readers.map((r) =>
          waitStore(r, () => r.store.getCell(...CELL) === i, timeoutMs, `fan-out edit ${i}`).then(
            () => r.seen.get(i) ?? now(),
          ),
        ),
      );
      const latencies = done.map((t) => t - t0);
      all.push(Math.max(...latencies));
      each.push(...latencies);
    }
    return {all, each};
  },

  // `count` separate setCell calls (one transaction each, as TinyBase users write them)
  // on distinct rows of table `table`. Returns when they started.
  burstWrite: async ({client, count, table = 'burst'}) => {
    const store = getClient(client).store;
    const t = now();
    for (let i = 0; i < count; i++) {
      store.setCell(table, `r${i}`, 'c', i);
    }
    return {t, sentAt: now()};
  },

  // Resolves (with the time) when `table` of `client` has `count` rows.
  waitRows: async ({client, count, table = 'burst', timeoutMs = 120000}) => {
    const c = getClient(client);
    c.failOnClose = true;
    const t = await waitStore(
      c,
      () => c.store.getRowCount(table) >= count,
      timeoutMs,
      `${count} rows in ${table}`,
    );
    return {t, rows: c.store.getRowCount(table)};
  },

  // Both ends in Node: burstWrite + waitRows.
  burst: async ({writer, reader, count, table = 'burst', timeoutMs = 120000}) => {
    const r = getClient(reader);
    r.failOnClose = true;
    const waiting = waitStore(
      r,
      () => r.store.getRowCount(table) >= count,
      timeoutMs,
      `${count} rows in ${table}`,
    );
    const {t} = await commands.burstWrite({client: writer, count, table});
    const t1 = await waiting;
    return {seconds: (t1 - t) / 1e6};
  },

  // A fresh client loads the room (GET through startAutoLoad); times the load.
  load: async ({client, host, room, expectCells, timeoutMs = 300000}) => {
    const t0 = now();
    const c = await connectOne({name: client, host, room, save: false, openTimeoutMs: timeoutMs});
    const t1 = now();
    const cells = cellCount(c.store);
    if (expectCells !== undefined && cells !== expectCells) {
      throw new Error(`loaded ${cells} cells, expected ${expectCells} (errors: ${c.errors.join('; ')})`);
    }
    return {seconds: (t1 - t0) / 1e6, cells};
  },

  // A connected, auto-saving client puts `rows` x `cols` cells in one transaction (one
  // socket message for TinyBase); resolves when `reader` holds them all. A socket close
  // (e.g. PartyKit's 1009 for a frame over 1 MiB) fails the command with its code.
  saveBig: async ({writer, reader, rows, cols, table = 'bulk', timeoutMs = 300000}) => {
    const w = getClient(writer);
    const r = getClient(reader);
    w.failOnClose = true;
    const waiting = waitStore(
      r,
      () => r.store.getRowCount(table) >= rows,
      timeoutMs,
      `${rows} rows in ${table}`,
    );
    const closed = new Promise((_, reject) =>
      w.onClose.add((event) =>
        reject(new Error(`writer socket closed by the server (code ${event.code})`)),
      ),
    );
    const t0 = now();
    w.store.transaction(() => {
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++) {
          w.store.setCell(table, `r${i}`, `c${j}`, i * cols + j);
        }
      }
    });
    const t1 = await Promise.race([waiting, closed]);
    return {seconds: (t1 - t0) / 1e6};
  },

  cells: async ({client}) => ({cells: cellCount(getClient(client).store)}),

  errors: async ({client}) => {
    const c = getClient(client);
    return {errors: c.errors, closes: c.closes};
  },

  rss: async ({gc = true}) => {
    if (gc && globalThis.gc) {
      globalThis.gc();
    }
    return {rssKiB: vmRssKiB(), heapUsed: process.memoryUsage().heapUsed};
  },

  clients: async () => ({count: clients.size}),

  exit: async () => {
    await Promise.allSettled([...clients.keys()].map(disconnectOne));
    setImmediate(() => process.exit(0));
    return null;
  },
};

const handle = async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    write({id: null, ok: false, error: `bad JSON request: ${describe(error)}`});
    return;
  }
  const {id = null, cmd} = request;
  try {
    const command = commands[cmd];
    if (command === undefined) {
      throw new Error(`unknown command ${cmd}`);
    }
    write({id, ok: true, result: await command(request)});
  } catch (error) {
    write({id, ok: false, error: describe(error)});
  }
};

const lines = readline.createInterface({input: process.stdin, crlfDelay: Infinity});
lines.on('line', (line) => {
  if (line.trim() !== '') {
    void handle(line);
  }
});
lines.on('close', () => void commands.exit());
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`unhandledRejection: ${describe(reason)}\n`);
});
