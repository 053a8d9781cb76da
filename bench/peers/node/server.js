// Node.js socket.io peer server for the sio-nats benchmark suite.
//
// Speaks the bench protocol (Socket.IO v5 / Engine.IO v4, namespace "/"):
//   - on connect the socket joins room "all", plus `auth.room` when it is a string;
//   - "echo" (with ack): the ack is answered with the very arguments received;
//   - "fanout" [room, count, stamp, pad]: emits "m" [stamp, i, pad] to `room`
//     `count` times (i = 0..count-1), then answers an ack (if any) with [count];
//   - "tick" [stamp, i]: emits "m" [stamp, i] back to the sender.
//
// Run (single process, in-memory adapter):
//   PORT=3100 node bench/peers/node/server.js
// With connection state recovery (in-memory adapter): RECOVERY=1.
// Several processes sharing rooms through Redis:
//   REDIS_URL=redis://127.0.0.1:6379 PORT=3101 node bench/peers/node/server.js
//   REDIS_URL=redis://127.0.0.1:6379 PORT=3102 node bench/peers/node/server.js
//
// Install its dependencies first: `npm ci` inside bench/peers/node.
// Prints exactly one line `listening on <port>` once ready; exits on SIGTERM/SIGINT.
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const HOST = "127.0.0.1";
const PORT = Number.parseInt(process.env.PORT || "3000", 10);
const REDIS_URL = process.env.REDIS_URL;
// RECOVERY=1: connection state recovery on, with socket.io's defaults.
const RECOVERY = Boolean(process.env.RECOVERY);

function onConnection(socket) {
  socket.join("all");
  const auth = socket.handshake.auth;
  if (auth && typeof auth.room === "string") {
    socket.join(auth.room);
  }

  socket.on("echo", (...args) => {
    const ack = args[args.length - 1];
    if (typeof ack === "function") {
      ack(...args.slice(0, -1));
    }
  });

  socket.on("tick", (...args) => {
    socket.emit("m", ...args);
  });

  socket.on("fanout", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    const [room, count, stamp, pad] = args;
    if (
      typeof room !== "string" ||
      !Number.isSafeInteger(count) ||
      count < 1 ||
      typeof stamp !== "number" ||
      typeof pad !== "string"
    ) {
      return; // malformed: ignore
    }
    const target = socket.nsp.to(room);
    for (let i = 0; i < count; i++) {
      target.emit("m", stamp, i, pad);
    }
    if (ack) ack(count);
  });
}

async function main() {
  const httpServer = http.createServer();
  const opts = {
    path: "/socket.io/",
    transports: ["polling", "websocket"],
    pingInterval: 25000,
    pingTimeout: 20000,
    maxHttpBufferSize: 1e6,
    serveClient: false,
  };
  if (RECOVERY) {
    opts.connectionStateRecovery = { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true };
  }

  let redisClients = [];
  if (REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pubClient = createClient({ url: REDIS_URL });
    const subClient = pubClient.duplicate();
    for (const c of [pubClient, subClient]) {
      c.on("error", (err) => console.error("redis error:", err.message));
    }
    await Promise.all([pubClient.connect(), subClient.connect()]);
    redisClients = [pubClient, subClient];
    opts.adapter = createAdapter(pubClient, subClient);
  }

  const io = new Server(httpServer, opts);
  io.on("connection", onConnection);

  if (REDIS_URL) {
    // The adapter issues its (P)SUBSCRIBE commands without exposing the
    // promises. Commands on one connection complete in order, so once a
    // subscription queued after them is confirmed, the adapter is ready.
    const [, subClient] = redisClients;
    const probe = `sio-nats-bench-ready#${process.pid}#${Date.now()}`;
    const noop = () => {};
    await subClient.subscribe(probe, noop);
    await subClient.unsubscribe(probe, noop);
  }

  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(PORT, HOST, resolve);
  });
  process.stdout.write(`listening on ${httpServer.address().port}\n`);

  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    try {
      await io.close();
      await Promise.all(redisClients.map((c) => c.quit().catch(() => {})));
    } catch (err) {
      console.error("shutdown error:", err.message);
    }
    process.exit(0);
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
