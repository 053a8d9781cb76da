// Stock clients spread over many gateways talk through one room of the
// chat on "/". Driven by tests/tests/deploy.rs and nats_cluster.rs.
//
//   SIO_URLS            gateways, comma-separated; client i uses the i-th in turn
//   SIO_LOCAL_ADDRESSES source addresses, client i uses the i-th in turn (a
//                       load balancer hashing on the client address spreads them)
//   SIO_CLIENTS         how many clients (default 12)
//   SIO_TRANSPORTS      the transports of every client, comma-separated
//                       ("polling", "polling,websocket"); unset, half upgrade
//                       from polling and half start on websocket
//   SIO_AWAIT_KILL      when set, after the first round wait for a line
//                       "killed <k>" on stdin: k clients lose their gateway,
//                       reconnect and rejoin, and a second round runs
//
// A round: every client sends one message to the room and every client gets
// each message exactly once; `users` (a cross-gateway fetch_sockets) lists
// everyone. Prints "round <n> ok", then "disconnected <d>" (clients that were
// ever disconnected) and exits 0; anything else exits 1.
"use strict";

const http = require("node:http");
const readline = require("node:readline");
const { io } = require("socket.io-client");

const URLS = (process.env.SIO_URLS || "http://127.0.0.1:3000").split(",");
const ADDRESSES = (process.env.SIO_LOCAL_ADDRESSES || "").split(",").filter(Boolean);
const COUNT = Number(process.env.SIO_CLIENTS || 12);
const ROOM = "spread";
const TIMEOUT = 10000;

function fail(why) {
  console.log("failed: " + why);
  process.exit(1);
}
setTimeout(() => fail("took longer than 60 s"), 60000).unref();

function within(promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(what + " timed out")), TIMEOUT);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

const clients = [];
for (let i = 0; i < COUNT; i++) {
  const nickname = "c" + i;
  const localAddress = ADDRESSES.length ? ADDRESSES[i % ADDRESSES.length] : undefined;
  const socket = io(URLS[i % URLS.length], {
    auth: { nickname },
    // One connection per client, not one shared by every client of a URL.
    forceNew: true,
    // Half upgrade from polling, half start on websocket, unless told.
    transports: process.env.SIO_TRANSPORTS
      ? process.env.SIO_TRANSPORTS.split(",")
      : i % 2 ? ["polling", "websocket"] : ["websocket"],
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    timeout: TIMEOUT,
    ...(localAddress && { localAddress, agent: new http.Agent({ localAddress, keepAlive: true }) }),
  });
  const client = { nickname, socket, received: [], disconnects: 0, joined: null };
  // Joins (again, after a reconnect) on every connect.
  socket.on("connect", () => {
    client.joined = socket.timeout(TIMEOUT).emitWithAck("join", ROOM);
  });
  socket.on("disconnect", () => { client.disconnects += 1; });
  socket.on("message", (line) => { if (line.room === ROOM) client.received.push(line.text); });
  clients.push(client);
}

async function settled() {
  const deadline = Date.now() + TIMEOUT;
  while (clients.some((c) => !c.socket.connected || !c.joined)) {
    if (Date.now() > deadline) fail("clients did not (re)connect");
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const c of clients) {
    if ((await within(c.joined, "join")) !== true) fail(c.nickname + " could not join");
  }
  // A gateway that was killed answers no cluster operation; once presence
  // has dropped it, `users` sees everyone again.
  const want = clients.map((c) => c.nickname).sort().join(",");
  for (;;) {
    const users = await clients[0].socket.timeout(TIMEOUT).emitWithAck("users", ROOM);
    if (users.join(",") === want) return;
    if (Date.now() > deadline) fail("users: " + users.join(",") + ", want " + want);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function round(n) {
  await settled();
  for (const c of clients) c.received = [];
  const sent = clients.map((c) => `round ${n} from ${c.nickname}`);
  const acks = await within(
    Promise.all(clients.map((c, i) => c.socket.timeout(TIMEOUT).emitWithAck("message", ROOM, sent[i]))),
    "message acks",
  );
  if (!acks.every((a) => a === true)) fail("a message was refused");
  const want = [...sent].sort().join("|");
  const deadline = Date.now() + TIMEOUT;
  while (clients.some((c) => c.received.length < sent.length) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  // Anything sent twice would arrive by now.
  await new Promise((r) => setTimeout(r, 200));
  for (const c of clients) {
    const got = [...c.received].sort().join("|");
    if (got !== want) fail(`${c.nickname} received ${c.received.length}: ${got}`);
  }
  console.log(`round ${n} ok`);
}

async function killed() {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const m = /^killed (\d+)$/.exec(line);
    if (m) return Number(m[1]);
  }
  return fail("stdin closed");
}

(async () => {
  await round(1);
  if (process.env.SIO_AWAIT_KILL) {
    const k = await killed();
    const deadline = Date.now() + TIMEOUT;
    while (clients.filter((c) => c.disconnects > 0).length < k && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await round(2);
  }
  console.log("disconnected " + clients.filter((c) => c.disconnects > 0).length);
  for (const c of clients) c.socket.close();
  process.exit(0);
})().catch((e) => fail(e.stack || String(e)));
