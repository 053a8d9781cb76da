// Connects to /echo and keeps reconnecting; after its second connect (the
// gateway was restarted meanwhile) it checks an ack and exits 0.
// Driven by tests/tests/processes.rs, which restarts the gateway when it
// reads "connected 1".
"use strict";

const { io } = require("socket.io-client");

const socket = io((process.env.SIO_URL || "http://127.0.0.1:3000") + "/echo", {
  transports: ["websocket"],
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
});
let connects = 0;
socket.on("connect", async () => {
  connects += 1;
  console.log("connected " + connects);
  if (connects === 2) {
    const answer = await socket.timeout(5000).emitWithAck("echo", "after restart");
    console.log("ack " + answer);
    socket.close();
    process.exit(answer === "after restart" ? 0 : 1);
  }
});
socket.on("disconnect", (reason) => console.log("disconnected " + reason));
setTimeout(() => {
  console.log("gave up");
  process.exit(2);
}, 30000);
