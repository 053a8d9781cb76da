// A rolling restart of every gateway under a steady emit load, with the
// stock socket.io-client: SIO_URL is a round-robin proxy in front of three
// gateway processes that tests/tests/recovery.rs drains (SIGTERM) and
// starts again one after another while it emits `n` ("room", 0…SIO_COUNT-1)
// to room "r" every 10 ms. Every client gets every number once, in order,
// keeps its socket id, and the workers' connect handler ran once per socket.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { steadyClients, assertSteady } = require("./helpers");

const URL = process.env.SIO_URL;
const COUNT = Number(process.env.SIO_COUNT);
const CLIENTS = Number(process.env.SIO_CLIENTS);

test("a rolling restart of every gateway loses nothing", { timeout: 120000 }, async () => {
  const clients = await steadyClients(URL, CLIENTS);
  const recovered = await assertSteady(clients, COUNT);
  // Every client was on a gateway that restarted at least once.
  assert.ok(recovered >= CLIENTS, `${recovered} recoveries for ${CLIENTS} clients`);
  for (const c of clients) c.socket.close();
});
