// The ordering load: stock clients in rooms, each sending numbered events
// to the `seq` handler of tests/src/order.rs, which emits each to the
// sender's room. Driven by tests/tests/order.rs.
//
//   SIO_URLS        gateways, comma-separated; client i uses the i-th in turn
//   SIO_CLIENTS     how many clients (default 100)
//   SIO_EVENTS      events each client sends (default 200)
//   SIO_ROOM_SIZE   clients per room (default 10)
//   SIO_INTERVAL    milliseconds between one client's events; 0 sends them
//                   all at once (default 0)
//   SIO_ACK_TIMEOUT milliseconds each ack may take (default 30000)
//
// Every receiver checks each sender's sequence as it arrives: a number
// above the last is received (past a gap, the numbers skipped are counted
// as gaps); one at or below it is replayed when the emit says it is a
// redelivery (attempt > 1), repeated when it is the last one again as it
// was, else reordered. Prints "sending",
// "progress <received>/<expected>" every second, then one line
// "summary <json>" with every count, and exits 0.
"use strict";

const { io } = require("socket.io-client");

const URLS = (process.env.SIO_URLS || "http://127.0.0.1:3000").split(",");
const COUNT = Number(process.env.SIO_CLIENTS || 100);
const EVENTS = Number(process.env.SIO_EVENTS || 200);
const ROOM_SIZE = Number(process.env.SIO_ROOM_SIZE || 10);
const INTERVAL = Number(process.env.SIO_INTERVAL || 0);
const ACK_TIMEOUT = Number(process.env.SIO_ACK_TIMEOUT || 30000);
const DEADLINE = Date.now() + 150000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const counts = {
  clients: COUNT,
  sent: 0,
  received: 0,
  expected: 0,
  reordered: 0,
  gaps: 0,
  replayed: 0,
  repeated: 0,
  redelivered: 0,
  acks: 0,
  acks_redelivered: 0,
  wrong_acks: 0,
  error_acks: {},
  ack_timeouts: 0,
  ack_max_ms: 0,
  disconnects: 0,
  connect_errors: 0,
  examples: [],
};

const clients = [];
for (let i = 0; i < COUNT; i++) {
  const name = "c" + i;
  const room = "r" + Math.floor(i / ROOM_SIZE);
  const socket = io(URLS[i % URLS.length], {
    forceNew: true,
    // Half upgrade from polling, half start on websocket.
    transports: i % 2 ? ["polling", "websocket"] : ["websocket"],
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
  });
  const client = { name, room, socket, last: new Map(), firsts: 0, joined: false };
  socket.on("disconnect", () => { counts.disconnects += 1; });
  socket.on("connect_error", () => { counts.connect_errors += 1; });
  socket.on("seq", (sender, n, attempt) => {
    const last = client.last.has(sender) ? client.last.get(sender) : -1;
    if (n > last) {
      // The next one; past a gap, the ones between were lost.
      counts.gaps += n - last - 1;
      client.last.set(sender, n);
      counts.received += 1;
      if (attempt > 1) counts.redelivered += 1;
    } else if (attempt > 1) {
      // Handed over again: its first emit may have been seen already.
      counts.replayed += 1;
    } else if (n === last) {
      // The same emit again, as it was.
      counts.repeated += 1;
    } else {
      counts.reordered += 1;
      if (counts.examples.length < 5) {
        counts.examples.push(`${name} got ${sender}:${n} (attempt ${attempt}) after ${last}`);
      }
    }
  });
  clients.push(client);
}
for (const c of clients) {
  counts.expected += EVENTS * clients.filter((o) => o.room === c.room).length;
}

async function main() {
  while (clients.some((c) => !c.socket.connected)) {
    if (Date.now() > DEADLINE) return;
    await sleep(20);
  }
  await Promise.all(clients.map(async (c) => {
    c.joined = await c.socket.timeout(ACK_TIMEOUT).emitWithAck("join", c.room);
  }));
  console.log("sending");
  const acks = [];
  await Promise.all(clients.map(async (c) => {
    for (let n = 0; n < EVENTS; n++) {
      const started = Date.now();
      acks.push(c.socket.timeout(ACK_TIMEOUT).emitWithAck("seq", c.room, c.name, n).then(
        (answer) => {
          counts.ack_max_ms = Math.max(counts.ack_max_ms, Date.now() - started);
          if (answer && typeof answer === "object" && answer.error) {
            counts.error_acks[answer.code] = (counts.error_acks[answer.code] || 0) + 1;
          } else if (Array.isArray(answer) && answer[0] === n) {
            counts.acks += 1;
            if (answer[1] > 1) counts.acks_redelivered += 1;
          } else {
            counts.wrong_acks += 1;
          }
        },
        () => { counts.ack_timeouts += 1; },
      ));
      counts.sent += 1;
      if (INTERVAL > 0) await sleep(INTERVAL);
    }
  }));
  await Promise.all(acks);
  // The last emits may follow the last acks by a moment.
  while (counts.received + counts.gaps < counts.expected && Date.now() < DEADLINE) await sleep(50);
  await sleep(300);
}

const progress = setInterval(() => {
  console.log(`progress ${counts.received}/${counts.expected}`);
}, 1000);
main().finally(() => {
  clearInterval(progress);
  console.log("summary " + JSON.stringify(counts));
  for (const c of clients) c.socket.close();
  process.exit(0);
});
