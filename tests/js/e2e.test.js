// End-to-end suite: the stock socket.io-client against a running sio-nats
// deployment serving the demo apps (chat on "/", echo on "/echo").
// Started by tests/tests/js.rs with SIO_URL set.
"use strict";

const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");

const URL = process.env.SIO_URL || "http://127.0.0.1:3000";
// SIO_TRANSPORTS ("polling", comma-separated) replaces the client's default
// transports wherever a test does not choose its own.
const DEFAULTS = process.env.SIO_TRANSPORTS ? { transports: process.env.SIO_TRANSPORTS.split(",") } : {};
const TIMEOUT = 5000;

// Every socket a test opened is closed at the end, even after a failure,
// so the process can exit.
const opened = new Set();
after(() => { for (const socket of opened) socket.close(); });

function open(nsp, opts = {}) {
  const socket = io(URL + nsp, { reconnection: false, timeout: TIMEOUT, ...DEFAULTS, ...opts });
  opened.add(socket);
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => { socket.close(); reject(err); });
  });
}

// The next `event` whose arguments `matches` (others in the same rooms,
// such as clients of an earlier test leaving the lobby, are let by).
function next(socket, event, matches = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no " + event + " in time")), TIMEOUT);
    const listener = (...args) => {
      if (!matches(...args)) return;
      socket.off(event, listener);
      clearTimeout(timer);
      resolve(args);
    };
    socket.on(event, listener);
  });
}

const by = (nickname) => (_room, who) => who === nickname;

function nothing(socket, event, ms = 300) {
  return new Promise((resolve, reject) => {
    const fail = () => reject(new Error("unexpected " + event));
    socket.once(event, fail);
    setTimeout(() => { socket.off(event, fail); resolve(); }, ms);
  });
}

function chatter(nickname, opts = {}) {
  return open("/", { auth: { nickname }, ...opts });
}

for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
  test(`echo over ${transports.join(" then ")}`, async () => {
    const socket = await open("/echo", { transports });
    const echoed = next(socket, "echo");
    socket.emit("echo", "text", 42, { nested: { list: [1, 2.5, null, true] } });
    assert.deepEqual(await echoed, ["text", 42, { nested: { list: [1, 2.5, null, true] } }]);
    assert.deepEqual(await socket.timeout(TIMEOUT).emitWithAck("echo", "acked"), "acked");
    if (transports.length === 2) {
      if (socket.io.engine.transport.name !== "websocket") await next(socket.io.engine, "upgrade");
      assert.equal(socket.io.engine.transport.name, "websocket");
    } else {
      assert.equal(socket.io.engine.transport.name, transports[0]);
    }
    socket.disconnect();
  });
}

test("binary in both directions: Buffer, ArrayBuffer, nested", async () => {
  for (const transports of [["polling"], ["websocket"]]) {
    const socket = await open("/echo", { transports });
    const bytes = Uint8Array.from([0, 1, 2, 254, 255]);
    const echoed = next(socket, "echo");
    socket.emit("echo", Buffer.from(bytes), bytes.buffer, { deep: [{ blob: Buffer.from("hi") }] });
    const [buffer, arrayBuffer, nested] = await echoed;
    assert.deepEqual([...buffer], [...bytes]);
    assert.deepEqual([...new Uint8Array(arrayBuffer)], [...bytes]);
    assert.equal(Buffer.from(nested.deep[0].blob).toString(), "hi");
    const acked = await new Promise((resolve) => socket.emit("echo", Buffer.from([7]), (...args) => resolve(args)));
    assert.deepEqual([...acked[0]], [7]);
    socket.disconnect();
  }
});

test("acks from the server to the client", async () => {
  const socket = await open("/echo");
  socket.on("question", (q, answer) => answer(q + "?!"));
  assert.equal(await socket.timeout(TIMEOUT).emitWithAck("ask", "really"), "really?!");
  socket.disconnect();
});

test("auth accepted and refused with data", async () => {
  await assert.rejects(chatter(""), (err) => err.message === "choose a nickname (1 to 32 characters)");
  const welcome = new Promise((resolve) => {
    const socket = io(URL, { auth: { nickname: "ada" }, reconnection: false, ...DEFAULTS });
    opened.add(socket);
    socket.once("welcome", (...args) => resolve([socket, args]));
  });
  const [socket, args] = await welcome;
  assert.deepEqual(args, ["ada", "lobby"]);
  assert.ok(socket.connected);
  socket.disconnect();
});

test("rooms: messages reach members only, leaving stops them", async () => {
  const ada = await chatter("ada");
  const bob = await chatter("bob", { transports: ["websocket"] });
  const cid = await chatter("cid", { transports: ["polling"] });
  assert.equal(await ada.timeout(TIMEOUT).emitWithAck("join", "rust"), true);
  const joined = next(ada, "joined", by("bob"));
  assert.equal(await bob.timeout(TIMEOUT).emitWithAck("join", "rust"), true);
  assert.deepEqual(await joined, ["rust", "bob"]);
  const toBob = next(bob, "message");
  const notCid = nothing(cid, "message");
  assert.equal(await ada.timeout(TIMEOUT).emitWithAck("message", "rust", "hello"), true);
  assert.deepEqual(await toBob, [{ room: "rust", from: "ada", text: "hello" }]);
  await notCid;
  assert.equal(await cid.timeout(TIMEOUT).emitWithAck("message", "rust", "not a member"), false);
  assert.deepEqual(await cid.timeout(TIMEOUT).emitWithAck("users", "rust"), ["ada", "bob"]);
  const left = next(ada, "left", by("bob"));
  bob.emit("leave", "rust");
  assert.deepEqual(await left, ["rust", "bob"]);
  const gone = nothing(bob, "message");
  await ada.timeout(TIMEOUT).emitWithAck("message", "rust", "bob left");
  await gone;
  for (const s of [ada, bob, cid]) s.disconnect();
});

test("volatile typing indicator", async () => {
  const ada = await chatter("ada");
  const bob = await chatter("bob");
  const typing = next(bob, "typing");
  // A volatile packet is dropped for a client that is not ready for it
  // (bob may still be receiving his welcome), so keep typing until one
  // gets through.
  const keys = setInterval(() => ada.volatile.emit("typing", "lobby"), 50);
  try {
    assert.deepEqual(await typing, ["lobby", "ada"]);
  } finally {
    clearInterval(keys);
  }
  ada.disconnect();
  bob.disconnect();
});

test("disconnects: from the client and from the server, with their reasons", async () => {
  const ada = await chatter("ada");
  const bob = await chatter("bob");
  const left = next(ada, "left", by("bob"));
  bob.disconnect();
  assert.deepEqual(await left, ["lobby", "bob"]);
  const reason = next(ada, "disconnect");
  ada.emit("quit");
  assert.deepEqual(await reason, ["io server disconnect", undefined]);
});

test("payloads at the size limit pass, larger ones close the connection", async () => {
  const socket = await open("/echo", { transports: ["websocket"] });
  const big = "x".repeat(999_000);
  assert.equal((await socket.timeout(TIMEOUT).emitWithAck("echo", big)).length, big.length);
  const closed = next(socket, "disconnect");
  socket.emit("echo", "y".repeat(1_000_001));
  const [reason] = await closed;
  assert.ok(["transport close", "transport error"].includes(reason), reason);
});
