// Sockets handed over by their websocket upgrade stay recoverable, with
// the stock socket.io-client: SIO_URL is a round-robin proxy in front of
// gateways A and C, which the clients poll, while their websockets go to
// gateway B (SIO_WS_PORT), which takes each session over from where it
// was opened. tests/tests/recovery.rs emits `n` ("room", …) to room "r"
// and ("id", …) to every client by id, every 10 ms. Each client's
// connection is dropped (B parks its socket; it comes back polling to A
// or C and is recovered from B, then upgrades to B again); then the Rust
// side kills B with kill -9, and every client is recovered on A or C
// from JetStream. Every client gets every number once, in order, as the
// same socket; the workers never hear a disconnect.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { steadyClients, assertSteady, drop, once, until, sleep } = require("./helpers");

const URL = process.env.SIO_URL;
const COUNT = Number(process.env.SIO_COUNT);
const CLIENTS = Number(process.env.SIO_CLIENTS);
const WS_PORT = Number(process.env.SIO_WS_PORT);

const onWebsocket = (socket) => socket.io.engine?.transport?.name === "websocket";
const upgraded = (c) => onWebsocket(c.socket);

test("handed-over sockets recover, from their gateway and after it is killed", { timeout: 120000 }, async () => {
  // Each joins once handed over to B, so that its join is not on its way
  // while the session moves.
  const opts = { transportOptions: { websocket: { port: WS_PORT } } };
  const clients = await steadyClients(URL, CLIENTS, opts, (socket) =>
    until(() => onWebsocket(socket), "the upgrade to B"));
  for (const c of clients) {
    const back = once(c.socket, "connect");
    await drop(c.socket);
    await back;
    assert.equal(c.socket.recovered, true, `${c.id} recovered from B`);
  }
  // Upgraded to B again: the Rust side kills it now.
  await until(() => clients.every(upgraded), "every client upgraded again");
  await sleep(300);
  console.log("upgraded again");
  const recovered = await assertSteady(clients, COUNT);
  console.log(`recovered ${recovered}`);
  assert.ok(recovered >= 2 * CLIENTS, `each client twice: ${recovered}`);
  for (const c of clients) c.socket.close();
});
