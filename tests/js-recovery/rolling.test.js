// A rolling restart of every gateway under a steady emit load, with the
// stock socket.io-client: SIO_URL is a round-robin proxy in front of three
// gateway processes that tests/tests/recovery.rs drains (SIGTERM) and
// starts again one after another while it emits `n` ("room", 0…SIO_COUNT-1)
// to room "r" every 10 ms. Every client gets every number once, in order,
// keeps its socket id, and the workers' connect handler ran once per socket.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { open, call, sleep, range, record } = require("./helpers");

const URL = process.env.SIO_URL;
const COUNT = Number(process.env.SIO_COUNT);
const CLIENTS = Number(process.env.SIO_CLIENTS);

test("a rolling restart of every gateway loses nothing", { timeout: 120000 }, async () => {
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) {
    const socket = await open(URL, { transports: ["websocket"] });
    const { got } = record(socket);
    let recovered = 0;
    socket.on("connect", () => { if (socket.recovered) recovered++; });
    await call(socket, "join", "r");
    clients.push({ socket, got, id: socket.id, recovered: () => recovered });
  }
  // The emits start once every client joined, and last past the restarts.
  const last = (c) => (c.got.room || []).at(-1);
  const deadline = Date.now() + 60000;
  while (clients.some((c) => last(c) !== COUNT - 1) && Date.now() < deadline) {
    await sleep(100);
  }
  await sleep(300);
  let moved = 0;
  const gaps = (got) => {
    const have = new Set(got);
    const missing = range(0, COUNT).filter((n) => !have.has(n));
    const twice = got.filter((n, i) => got.indexOf(n) !== i);
    return `${got.length} got, missing ${missing.length}: ${missing.slice(0, 5)}…${missing.slice(-3)}, twice: ${twice.slice(0, 5)}`;
  };
  for (const c of clients) {
    assert.deepEqual(c.got.room, range(0, COUNT), `client ${c.id}: ${gaps(c.got.room || [])}`);
    assert.equal(c.socket.id, c.id, "the same socket throughout");
    moved += c.recovered();
  }
  // Every client was on a gateway that restarted at least once.
  assert.ok(moved >= CLIENTS, `${moved} recoveries for ${CLIENTS} clients`);
  const asker = clients[0].socket;
  for (const c of clients) {
    const seen = await call(asker, "seen", c.id);
    assert.deepEqual(seen, { connects: 1, disconnect: null }, `workers' view of ${c.id}`);
  }
  for (const c of clients) c.socket.close();
});
