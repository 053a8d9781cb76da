// Connection state recovery with the stock socket.io-client, against a
// gateway with --connection-state-recovery (SIO_URL, a 10 s window) and one
// with a 1 s window (SIO_SHORT_URL), and the worker of
// tests/tests/recovery.rs. Started by that test.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { open, once, call, sleep, range, record, count, until, drop, assertRestored } = require("./helpers");

const URL = process.env.SIO_URL;
const SHORT = process.env.SIO_SHORT_URL;

for (const transports of [["websocket"], ["polling"]]) {
  test(`recovered after its ${transports} transport dropped: every packet once, in order`, async () => {
    const a = await open(URL, { transports, auth: { token: "t" } });
    assert.equal(a.recovered, false);
    assert.match(a._pid, /^[A-Za-z0-9_-]{32}$/, "the CONNECT reply carries a pid");
    const { got, offsets } = record(a);
    await call(a, "join", "r1");
    await call(a, "remember", { n: 7 });
    const b = await open(URL, { transports: ["websocket"] });
    await call(b, "blast", { to: "room:r1", tag: "room", from: 0, count: 10 });
    await until(() => count(got, "room") === 10, "the first 10");
    assert.equal(offsets.length, 10);
    assert.ok(offsets.every((o) => typeof o === "string" && o.length === 11), "each with its offset");
    const id = a.id;
    // It asks for 20 to itself, 20 ms apart, and loses its connection
    // while they come.
    a.emit("blast", { to: "me", tag: "me", from: 0, count: 20, pause_ms: 20 });
    await until(() => count(got, "me") >= 3, "a few to itself");
    await drop(a);
    // Meanwhile: to its room, its id and its namespace.
    await call(b, "blast", { to: "room:r1", tag: "room", from: 10, count: 20 });
    await call(b, "blast", { to: "id:" + id, tag: "id", from: 0, count: 20 });
    await call(b, "blast", { to: "all", tag: "all", from: 0, count: 20 });
    assert.ok(!a.connected);
    await once(a, "connect");
    assert.equal(a.recovered, true);
    assert.equal(a.id, id);
    await until(
      () => count(got, "room") >= 30 && count(got, "id") >= 20 && count(got, "all") >= 20 && count(got, "me") >= 20,
      "what it missed",
    );
    // New emits come after what it missed.
    await call(b, "blast", { to: "room:r1", tag: "room", from: 30, count: 5 });
    await until(() => count(got, "room") >= 35, "the ones after");
    await sleep(200);
    assert.deepEqual(got.room, range(0, 35));
    assert.deepEqual(got.id, range(0, 20));
    assert.deepEqual(got.all, range(0, 20));
    assert.deepEqual(got.me, range(0, 20));
    await assertRestored(a, id);
    // The workers never heard it leave, nor were asked about it again.
    const seen = await call(b, "seen", id);
    assert.deepEqual(seen, { connects: 1, disconnect: null });
    a.close();
    b.close();
  });
}

test("recovered before its first event", async () => {
  const a = await open(URL, { transports: ["websocket"] });
  const { got } = record(a);
  await call(a, "join", "r2");
  const id = a.id;
  await drop(a);
  const b = await open(URL, { transports: ["websocket"] });
  await call(b, "blast", { to: "room:r2", tag: "room", from: 0, count: 10 });
  await once(a, "connect");
  assert.equal(a.recovered, true);
  assert.equal(a.id, id);
  await until(() => count(got, "room") >= 10, "what it missed");
  await sleep(200);
  assert.deepEqual(got.room, range(0, 10));
  a.close();
  b.close();
});

test("volatile emits in between leave the offsets alone", async () => {
  const a = await open(URL, { transports: ["websocket"] });
  const { got } = record(a);
  const volatile = [];
  a.on("v", (...args) => volatile.push(args));
  await call(a, "join", "r3");
  const b = await open(URL, { transports: ["websocket"] });
  // The last packet it gets is a volatile one (after 9); paced, so that
  // none finds packets still queued (and is dropped, being volatile).
  await call(b, "blast", { to: "room:r3", tag: "room", from: 0, count: 10, volatile_every: 3, pause_ms: 30 });
  await until(() => count(got, "room") === 10 && volatile.length === 4, "the first 10 and 4 volatile");
  assert.deepEqual(volatile, [[0], [3], [6], [9]], "volatile packets carry no offset");
  await drop(a);
  await call(b, "blast", { to: "room:r3", tag: "room", from: 10, count: 10, volatile_every: 3 });
  await once(a, "connect");
  assert.equal(a.recovered, true);
  await until(() => count(got, "room") >= 20, "what it missed");
  await sleep(200);
  assert.deepEqual(got.room, range(0, 20));
  a.close();
  b.close();
});

test("past the window: a new socket, and the workers hear that the old one left", async () => {
  const a = await open(SHORT, { transports: ["websocket"], reconnectionDelay: 2500, reconnectionDelayMax: 2500 });
  await call(a, "join", "r4");
  const id = a.id;
  await drop(a);
  await once(a, "connect");
  assert.equal(a.recovered, false);
  assert.notEqual(a.id, id);
  const me = await call(a, "whoami");
  assert.deepEqual(me.rooms, []);
  assert.equal(me.recovered, false);
  const seen = await call(a, "seen", id);
  assert.deepEqual(seen, { connects: 1, disconnect: "transport close" });
  a.close();
});

test("a client that left on purpose is not recovered", async () => {
  const a = await open(URL, { transports: ["websocket"] });
  await call(a, "join", "r5");
  const id = a.id;
  a.disconnect();
  a.connect();
  await once(a, "connect");
  assert.equal(a.recovered, false);
  assert.notEqual(a.id, id);
  const seen = await call(a, "seen", id);
  assert.deepEqual(seen, { connects: 1, disconnect: "client namespace disconnect" });
  a.close();
});
