// peer.mjs: one Node process hosting many named reference TinyBase clients.
//
// Why: interop tests need real TinyBase 10.0.1 clients (createPartyKitPersister over a
// real partysocket 1.3.0 PartySocket using `ws`) talking to our Python server or to
// `partykit dev`, and benchmarks need up to ~1000 of them without ~1000 processes.
// Python drives this process with tests/support/node.py.
//
// Protocol: one JSON object per line on stdin (a request), one JSON object per line on
// stdout (a reply or an event). Requests run concurrently; replies may come out of
// order and carry the request's `id` (so `id` is reserved: PartySocket's id option is
// called `socketId` here):
//   request  {"id": 7, "cmd": "content", "client": "a"}
//   reply    {"id": 7, "ok": true, "result": [{...tables}, {...values}]}
//   failure  {"id": 7, "ok": false, "error": "message", "detail": <optional JSON>}
//   event    {"event": "open"|"close"|"error", "client": "a", ...}   (no id)
// stderr is free-form diagnostics (Python keeps its tail for error messages).
//
// Commands (fields after cmd; `client` is any name chosen by the caller):
//   ping {}                                   -> {"pong": true, "pid": N}
//   connect {client, host, room, party?, socketId?, query?, protocol?, config?,
//            initialContent?, storeContent?, autoLoad?=true, autoSave?=true,
//            waitOpen?=true, openTimeoutMs?=10000, socketOptions?, record?=true}
//       new PartySocket({host, room, party, id: socketId, query, protocol, WebSocket: ws,
//       ...socketOptions}); createStore() (then setContent(storeContent) if given);
//       createPartyKitPersister(store, socket, config, onIgnoredError); waits for the
//       socket to open (waitOpen), then `await startAutoLoad(initialContent)` and
//       `await startAutoSave()` as TinyBase's docs show. `config` defaults to
//       {storeProtocol: "http"} (the reference default is "https", which no loopback
//       server speaks); pass a full config to override. socketOptions are partysocket's
//       (minReconnectionDelay, maxReconnectionDelay, connectionTimeout, maxRetries...).
//       record=false keeps no message log (for benchmarks with many clients).
//       If the socket does not open in time the client is removed again.
//       -> {"socketId": the _pk id, "content": content after loading}
//   call {client, method, args?=[], target?="store"}
//       Calls store[method](...args) (target "persister" or "socket" for those
//       objects) and awaits it. `transaction` takes a list of ops
//       [[method, ...args], ...] run inside one store.transaction(). A result that is
//       the store/persister/socket itself is returned as null; `undefined` as null.
//   content {client}                          -> [tables, values]
//   waitForContent {client, content, timeoutMs?=10000}
//       resolves when the store's content deep-equals `content` (JavaScript ===
//       for leaves, key order ignored); fails with detail = the last content.
//   messages {client, clear?=false}           -> [{dir: "out"|"in", data, open}]
//       raw WebSocket text sent (wrapped socket.send; open=false when partysocket
//       queued it while disconnected) and received ('message' listener), in order.
//   errors {client, clear?=false}             -> [string] onIgnoredError calls
//   status {client}  -> {readyState, opens, closes, socketId, persisterStatus, stats}
//   waitForSocket {client, opens?, closes?, readyState?, timeoutMs?=10000}
//       resolves when opens >= N and/or closes >= N and/or readyState == N.
//   socket {client, action: "close"|"reconnect", code?, reason?}
//   disconnect {client}                       destroy persister, close socket, forget
//   clients {}                                -> [names]
//   http {method?="GET", url, body?, headers?} -> {status, headers, body}
//   exit {}                                   disconnect everyone and exit(0)

import readline from 'node:readline';
import WS from 'ws';
import {PartySocket} from 'partysocket';
import {createStore} from 'tinybase';
import {createPartyKitPersister} from 'tinybase/persisters/persister-partykit-client';

const clients = new Map();

const write = (obj) => {
  process.stdout.write(JSON.stringify(obj) + '\n');
};

class PeerError extends Error {
  constructor(message, detail) {
    super(message);
    this.detail = detail;
  }
}

const getClient = (name) => {
  const client = clients.get(name);
  if (client === undefined) {
    throw new PeerError(`no client named ${JSON.stringify(name)}`);
  }
  return client;
};

const describeError = (error) => {
  if (error instanceof Response) {
    return `HTTP ${error.status} ${error.statusText} from ${error.url}`;
  }
  if (error instanceof Error) {
    return `${error.name}: ${error.message}`;
  }
  try {
    return typeof error === 'string' ? error : JSON.stringify(error);
  } catch {
    return String(error);
  }
};

// Content equality as TinyBase sees it: objects compared by keys regardless of order,
// leaves with ===, so true !== 1 and "1" !== 1.
const deepEqual = (a, b) => {
  if (a === b) {
    return true;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((item, i) => deepEqual(item, b[i]))
    );
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const aKeys = Object.keys(a);
    return (
      aKeys.length === Object.keys(b).length &&
      aKeys.every((key) => Object.hasOwn(b, key) && deepEqual(a[key], b[key]))
    );
  }
  return false;
};

// Waits until check() returns true, re-checking whenever `subscribe` fires.
// subscribe(recheck) returns an unsubscribe function.
const waitUntil = (check, subscribe, timeoutMs, onTimeout) =>
  new Promise((resolve, reject) => {
    if (check()) {
      resolve(null);
      return;
    }
    let unsubscribe = () => {};
    const timer = setTimeout(() => {
      unsubscribe();
      reject(onTimeout());
    }, timeoutMs);
    unsubscribe = subscribe(() => {
      if (check()) {
        clearTimeout(timer);
        unsubscribe();
        resolve(null);
      }
    });
  });

const subscribeSocket = (client) => (recheck) => {
  client.watchers.add(recheck);
  return () => client.watchers.delete(recheck);
};

const notify = (client) => {
  for (const recheck of [...client.watchers]) {
    recheck();
  }
};

const commands = {
  ping: async () => ({pong: true, pid: process.pid}),

  clients: async () => [...clients.keys()],

  connect: async ({
    client: name,
    host,
    room,
    party,
    socketId,
    query,
    protocol,
    config = {storeProtocol: 'http'},
    initialContent,
    storeContent,
    autoLoad = true,
    autoSave = true,
    waitOpen = true,
    openTimeoutMs = 10000,
    socketOptions = {},
    record = true,
  }) => {
    if (clients.has(name)) {
      throw new PeerError(`client ${JSON.stringify(name)} already exists`);
    }
    const socketInit = {host, room, WebSocket: WS, ...socketOptions};
    for (const [key, value] of Object.entries({party, id: socketId, query, protocol})) {
      if (value !== undefined && value !== null) {
        socketInit[key] = value;
      }
    }
    const socket = new PartySocket(socketInit);
    const client = {
      name,
      socket,
      store: createStore(),
      persister: undefined,
      messages: record ? [] : undefined,
      errors: [],
      opens: 0,
      closes: 0,
      watchers: new Set(),
    };
    clients.set(name, client);

    const send = socket.send.bind(socket);
    socket.send = (data) => {
      client.messages?.push({
        dir: 'out',
        data,
        open: socket.readyState === WS.OPEN,
      });
      send(data);
    };
    socket.addEventListener('message', (event) => {
      client.messages?.push({dir: 'in', data: event.data, open: true});
    });
    socket.addEventListener('open', () => {
      client.opens++;
      write({event: 'open', client: name, opens: client.opens});
      notify(client);
    });
    socket.addEventListener('close', (event) => {
      client.closes++;
      write({
        event: 'close',
        client: name,
        closes: client.closes,
        code: event.code,
        reason: event.reason,
      });
      notify(client);
    });
    socket.addEventListener('error', (event) => {
      write({event: 'error', client: name, message: describeError(event.error ?? event.message)});
    });

    if (storeContent !== undefined) {
      client.store.setContent(storeContent);
    }
    client.persister = createPartyKitPersister(client.store, socket, config, (error) =>
      client.errors.push(describeError(error)),
    );
    try {
      if (waitOpen) {
        await waitUntil(
          () => client.opens > 0,
          subscribeSocket(client),
          openTimeoutMs,
          () => new PeerError(`socket of ${name} did not open within ${openTimeoutMs} ms`),
        );
      }
      if (autoLoad) {
        await client.persister.startAutoLoad(initialContent);
      }
      if (autoSave) {
        await client.persister.startAutoSave();
      }
    } catch (error) {
      // A half-made client would keep reconnecting in the background: remove it.
      await commands.disconnect({client: name}).catch(() => {});
      throw error;
    }
    return {socketId: socket.id, content: client.store.getContent()};
  },

  call: async ({client: name, method, args = [], target = 'store'}) => {
    const client = getClient(name);
    const object = {store: client.store, persister: client.persister, socket: client.socket}[
      target
    ];
    if (object === undefined) {
      throw new PeerError(`unknown target ${JSON.stringify(target)}`);
    }
    let result;
    if (target === 'store' && method === 'transaction') {
      const [ops] = args;
      result = client.store.transaction(() => {
        for (const [opMethod, ...opArgs] of ops) {
          if (typeof client.store[opMethod] !== 'function') {
            throw new PeerError(`store has no method ${JSON.stringify(opMethod)}`);
          }
          client.store[opMethod](...opArgs);
        }
      });
    } else {
      if (typeof object[method] !== 'function') {
        throw new PeerError(`${target} has no method ${JSON.stringify(method)}`);
      }
      result = await object[method](...args);
    }
    return result === client.store || result === client.persister || result === client.socket
      ? null
      : (result ?? null);
  },

  content: async ({client: name}) => getClient(name).store.getContent(),

  waitForContent: async ({client: name, content, timeoutMs = 10000}) => {
    const client = getClient(name);
    const store = client.store;
    await waitUntil(
      () => deepEqual(store.getContent(), content),
      (recheck) => {
        const listenerId = store.addDidFinishTransactionListener(recheck);
        return () => store.delListener(listenerId);
      },
      timeoutMs,
      () =>
        new PeerError(
          `content of ${name} did not become the expected one within ${timeoutMs} ms`,
          store.getContent(),
        ),
    );
    return store.getContent();
  },

  messages: async ({client: name, clear = false}) => {
    const client = getClient(name);
    if (client.messages === undefined) {
      throw new PeerError(`client ${name} was connected with record=false`);
    }
    const messages = client.messages;
    if (clear) {
      client.messages = [];
    }
    return messages;
  },

  errors: async ({client: name, clear = false}) => {
    const client = getClient(name);
    const errors = client.errors;
    if (clear) {
      client.errors = [];
    }
    return errors;
  },

  status: async ({client: name}) => {
    const client = getClient(name);
    return {
      readyState: client.socket.readyState,
      opens: client.opens,
      closes: client.closes,
      socketId: client.socket.id,
      persisterStatus: client.persister.getStatus(),
      stats: client.persister.getStats(),
    };
  },

  waitForSocket: async ({client: name, opens, closes, readyState, timeoutMs = 10000}) => {
    const client = getClient(name);
    const check = () =>
      (opens === undefined || client.opens >= opens) &&
      (closes === undefined || client.closes >= closes) &&
      (readyState === undefined || client.socket.readyState === readyState);
    await waitUntil(
      check,
      subscribeSocket(client),
      timeoutMs,
      () =>
        new PeerError(`socket of ${name} did not reach the wanted state in ${timeoutMs} ms`, {
          opens: client.opens,
          closes: client.closes,
          readyState: client.socket.readyState,
        }),
    );
    return {opens: client.opens, closes: client.closes, readyState: client.socket.readyState};
  },

  socket: async ({client: name, action, code, reason}) => {
    const client = getClient(name);
    if (action === 'close') {
      client.socket.close(code, reason);
    } else if (action === 'reconnect') {
      client.socket.reconnect(code, reason);
    } else {
      throw new PeerError(`unknown socket action ${JSON.stringify(action)}`);
    }
    return null;
  },

  disconnect: async ({client: name}) => {
    const client = getClient(name);
    clients.delete(name);
    await client.persister?.destroy();
    client.socket.close();
    return null;
  },

  http: async ({method = 'GET', url, body, headers}) => {
    const response = await fetch(url, {method, body, headers});
    return {
      status: response.status,
      headers: Object.fromEntries(response.headers.entries()),
      body: await response.text(),
    };
  },

  exit: async () => {
    await Promise.allSettled([...clients.keys()].map((name) => commands.disconnect({client: name})));
    setImmediate(() => process.exit(0));
    return null;
  },
};

const handle = async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    write({id: null, ok: false, error: `bad JSON request: ${describeError(error)}`});
    return;
  }
  const {id = null, cmd} = request;
  try {
    const command = commands[cmd];
    if (command === undefined) {
      throw new PeerError(`unknown command ${JSON.stringify(cmd)}`);
    }
    const result = await command(request);
    write({id, ok: true, result});
  } catch (error) {
    write({
      id,
      ok: false,
      error: error instanceof PeerError ? error.message : describeError(error),
      ...(error instanceof PeerError && error.detail !== undefined
        ? {detail: error.detail}
        : {}),
    });
  }
};

const lines = readline.createInterface({input: process.stdin, crlfDelay: Infinity});
lines.on('line', (line) => {
  if (line.trim() !== '') {
    void handle(line);
  }
});
// Stdin closing means the driver is gone: leave instead of lingering with sockets open.
lines.on('close', () => {
  void commands.exit();
});
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`unhandledRejection: ${describeError(reason)}\n`);
});
