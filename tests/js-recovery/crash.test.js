// A gateway killed with kill -9 under a steady emit load, with the stock
// socket.io-client: SIO_URL is nginx (round robin) in front of three
// gateway processes; tests/tests/recovery.rs emits `n` ("room",
// 0…SIO_COUNT-1) to room "r" every 10 ms and kills the gateway holding
// some of the clients. Its clients come back through nginx to the others
// and are recovered there from JetStream: every client gets every number
// once, in order, as the same socket; the workers never hear a disconnect.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { steadyClients, assertSteady } = require("./helpers");

const URL = process.env.SIO_URL;
const COUNT = Number(process.env.SIO_COUNT);
const CLIENTS = Number(process.env.SIO_CLIENTS);

test("the clients of a killed gateway recover on the others", { timeout: 120000 }, async () => {
  const clients = await steadyClients(URL, CLIENTS);
  const recovered = await assertSteady(clients, COUNT);
  // The Rust side checks it was exactly the killed gateway's clients.
  console.log(`recovered ${recovered}`);
  assert.ok(recovered > 0, "nobody was recovered");
  for (const c of clients) c.socket.close();
});
