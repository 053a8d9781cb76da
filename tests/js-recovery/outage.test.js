// A NATS restart under a steady emit load, with the stock socket.io-client:
// SIO_URL is a round-robin proxy in front of two gateway processes;
// tests/tests/recovery.rs emits `n` ("room", 0…SIO_COUNT-1) to room "r"
// every 10 ms, and ("id", n) to each client by socket id, and kills
// nats-server for 3 s meanwhile. The clients keep
// their connections throughout, and the gateways deliver from JetStream
// what core NATS dropped: every client gets every number once, in order.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { steadyClients, assertSteady, range } = require("./helpers");

const URL = process.env.SIO_URL;
const COUNT = Number(process.env.SIO_COUNT);
const CLIENTS = Number(process.env.SIO_CLIENTS);

test("a NATS restart loses nothing", { timeout: 120000 }, async () => {
  const clients = await steadyClients(URL, CLIENTS);
  const recovered = await assertSteady(clients, COUNT);
  assert.equal(recovered, 0, "no client lost its connection");
  // And every emit to its socket id, once, in order.
  for (const c of clients) assert.deepEqual(c.got.id, range(0, COUNT), `client ${c.id}, by id`);
  for (const c of clients) c.socket.close();
});
