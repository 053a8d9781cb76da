// Connection state recovery on another gateway, with the stock
// socket.io-client: SIO_URL is a round-robin proxy in front of two
// gateways, so each connection a client opens lands on the other gateway
// than its last; SIO_DIRECT is one of the gateways. The worker is that of
// tests/tests/recovery.rs, which starts this suite.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { open, call, once, sleep, range, record, count, until, drop, assertRestored } = require("./helpers");

const URL = process.env.SIO_URL;
const DIRECT = process.env.SIO_DIRECT;

test("recovered on the other gateway, then back on the first: every packet once, in order", async () => {
  const a = await open(URL, { transports: ["websocket"], auth: { token: "t" } });
  const { got } = record(a);
  await call(a, "join", "r1");
  await call(a, "remember", { n: 7 });
  const b = await open(DIRECT, { transports: ["websocket"] });
  await call(b, "blast", { to: "room:r1", tag: "room", from: 0, count: 10 });
  await until(() => count(got, "room") === 10, "the first 10");
  const id = a.id;
  for (const [round, from] of [[1, 10], [2, 30]]) {
    // Emits to itself on their way as it drops, then emits to its room,
    // its id and its namespace while it is away.
    a.emit("blast", { to: "me", tag: "me", from: (round - 1) * 20, count: 20, pause_ms: 20 });
    await until(() => count(got, "me") >= (round - 1) * 20 + 3, "a few to itself");
    await drop(a);
    await call(b, "blast", { to: "room:r1", tag: "room", from, count: 20 });
    await call(b, "blast", { to: "id:" + id, tag: "id", from: (round - 1) * 20, count: 20 });
    await call(b, "blast", { to: "all", tag: "all", from: (round - 1) * 20, count: 20 });
    await once(a, "connect");
    assert.equal(a.recovered, true, `recovered in round ${round}`);
    assert.equal(a.id, id);
    const want = round * 20;
    await until(
      () => count(got, "room") >= from + 20 && count(got, "id") >= want && count(got, "all") >= want && count(got, "me") >= want,
      `what it missed in round ${round} (got ${JSON.stringify(got)})`,
    );
  }
  // Live again: to its room, to its id (addressed to the first gateway,
  // which forwards), to itself.
  await call(b, "blast", { to: "room:r1", tag: "room", from: 50, count: 5 });
  await call(b, "blast", { to: "id:" + id, tag: "id", from: 40, count: 5 });
  await call(a, "blast", { to: "me", tag: "me", from: 40, count: 5 });
  await until(() => count(got, "room") >= 55 && count(got, "id") >= 45 && count(got, "me") >= 45, "the ones after");
  await sleep(200);
  assert.deepEqual(got.room, range(0, 55));
  assert.deepEqual(got.id, range(0, 45));
  assert.deepEqual(got.all, range(0, 40));
  assert.deepEqual(got.me, range(0, 45));
  await assertRestored(a, id);
  const seen = await call(b, "seen", id);
  assert.deepEqual(seen, { connects: 1, disconnect: null });
  a.close();
  b.close();
  // Its leaving is heard once, from where it lives.
  await sleep(300);
  const left = await call(await open(DIRECT, { transports: ["websocket"] }), "seen", id);
  assert.deepEqual(left, { connects: 1, disconnect: "client namespace disconnect" });
});
