// What the recovery suites share: clients that reconnect a second after
// they lose their connection, a record of the numbered events each gets,
// and the drop of a client's connection under it.
"use strict";

const { after } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");

const TIMEOUT = 10000;

// Every socket opened is closed at the end, even after a failure, so the
// process can exit.
const opened = new Set();
after(() => { for (const socket of opened) socket.close(); });

function open(url, opts = {}) {
  const socket = io(url, {
    forceNew: true,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 1000,
    randomizationFactor: 0,
    timeout: TIMEOUT,
    ...opts,
  });
  opened.add(socket);
  return once(socket, "connect").then(() => socket);
}

function once(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no " + event + " in time")), TIMEOUT);
    socket.once(event, (...args) => { clearTimeout(timer); resolve(args); });
  });
}

const call = (socket, event, ...args) => socket.timeout(TIMEOUT).emitWithAck(event, ...args);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const range = (from, count) => Array.from({ length: count }, (_, i) => from + i);

// Every `n` event a socket gets: the numbers of each tag in arrival order,
// and the offsets (the argument recovery appends).
function record(socket) {
  const got = {};
  const offsets = [];
  socket.on("n", (tag, n, ...rest) => {
    (got[tag] ||= []).push(n);
    offsets.push(...rest);
  });
  return { got, offsets };
}

const count = (got, tag) => (got[tag] || []).length;

async function until(check, what) {
  const deadline = Date.now() + TIMEOUT;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await sleep(20);
  }
}

// Closes the client's Engine.IO connection under it, as a network change
// does; the client reconnects by itself.
async function drop(socket) {
  const dropped = once(socket, "disconnect");
  socket.io.engine.close();
  await dropped;
}

// What the workers see of a socket that was recovered (the suites'
// clients join "r1", remember {n: 7} and send the auth {token: "t"}).
async function assertRestored(socket, id) {
  const me = await call(socket, "whoami");
  assert.equal(me.recovered, true);
  assert.equal(me.id, id);
  assert.deepEqual(JSON.parse(me.auth), { token: "t" }, "the auth without the recovery fields");
  assert.deepEqual(me.rooms, ["r1"]);
  assert.deepEqual(me.data, { n: 7 });
}

// Clients in room "r" while the suite's Rust side emits `n` ("room",
// 0…count-1) to it every 10 ms and takes gateways away under them.
async function steadyClients(url, clients, opts = { transports: ["websocket"] }, before = async () => {}) {
  const all = [];
  for (let i = 0; i < clients; i++) {
    const socket = await open(url, opts);
    await before(socket);
    const { got } = record(socket);
    let recovered = 0;
    socket.on("connect", () => { if (socket.recovered) recovered++; });
    await call(socket, "join", "r");
    all.push({ socket, got, id: socket.id, recovered: () => recovered });
  }
  return all;
}

// Every client got every number once, in order, as the same socket; the
// workers' connect handler ran once per socket and no disconnect reached
// them. Returns how many times clients were recovered.
async function assertSteady(clients, count) {
  const last = (c) => (c.got.room || []).at(-1);
  const deadline = Date.now() + 60000;
  while (clients.some((c) => last(c) !== count - 1) && Date.now() < deadline) {
    await sleep(100);
  }
  await sleep(300);
  const gaps = (got) => {
    const have = new Set(got);
    const missing = range(0, count).filter((n) => !have.has(n));
    const twice = got.filter((n, i) => got.indexOf(n) !== i);
    return `${got.length} got, missing ${missing.length}: ${missing.slice(0, 5)}…${missing.slice(-3)}, twice: ${twice.slice(0, 5)}`;
  };
  let recovered = 0;
  for (const c of clients) {
    assert.deepEqual(c.got.room, range(0, count), `client ${c.id}: ${gaps(c.got.room || [])}`);
    assert.equal(c.socket.id, c.id, "the same socket throughout");
    recovered += c.recovered();
  }
  const asker = clients[0].socket;
  for (const c of clients) {
    const seen = await call(asker, "seen", c.id);
    assert.deepEqual(seen, { connects: 1, disconnect: null }, `workers' view of ${c.id}`);
  }
  return recovered;
}

module.exports = {
  TIMEOUT, open, once, call, sleep, range, record, count, until, drop, assertRestored,
  steadyClients, assertSteady,
};
