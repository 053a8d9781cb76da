"""A second, independent client: python-socketio against the demo apps
(chat on "/", echo on "/echo"), over polling and over websocket.

Run by tests/tests/python.rs with SIO_URL set; prints one line per case and
a closing "N passed, N failed" line; exits non-zero on any failure.
"""

import os
import queue
import sys
import traceback

import socketio

URL = os.environ.get("SIO_URL", "http://127.0.0.1:3000")
TIMEOUT = 5


def client(transport, nsp, nickname=None):
    sio = socketio.Client(reconnection=False)
    inbox = queue.Queue()
    sio.on("*", lambda event, *args: inbox.put((event, list(args))), namespace=nsp)
    auth = {"nickname": nickname} if nickname is not None else None
    sio.connect(URL, namespaces=[nsp], transports=[transport], auth=auth, wait_timeout=TIMEOUT)
    return sio, inbox


def expect(inbox, event):
    while True:
        name, args = inbox.get(timeout=TIMEOUT)
        if name == event:
            return args


def case_echo(transport):
    sio, inbox = client(transport, "/echo")
    try:
        sio.emit("echo", ("text", 42, {"nested": [1, 2.5, None, True]}), namespace="/echo")
        assert expect(inbox, "echo") == ["text", 42, {"nested": [1, 2.5, None, True]}]
        assert sio.call("echo", "acked", namespace="/echo", timeout=TIMEOUT) == "acked"
        data = sio.call("echo", b"\x00\x01\xff", namespace="/echo", timeout=TIMEOUT)
        assert bytes(data) == b"\x00\x01\xff", data
        assert sio.transport() == transport
    finally:
        sio.disconnect()


def case_auth(transport):
    sio = socketio.Client(reconnection=False)
    refusals = queue.Queue()
    sio.on("connect_error", lambda data: refusals.put(data))
    try:
        sio.connect(URL, transports=[transport], auth={"nickname": ""}, wait_timeout=TIMEOUT)
        raise AssertionError("connected without a nickname")
    except socketio.exceptions.ConnectionError:
        refusal = refusals.get(timeout=TIMEOUT)
        assert refusal == {"message": "choose a nickname (1 to 32 characters)"}, refusal
    finally:
        sio.disconnect()
    sio, inbox = client(transport, "/", "py")
    try:
        assert expect(inbox, "welcome") == ["py", "lobby"]
    finally:
        sio.disconnect()


def case_rooms(transport):
    ada, ada_in = client(transport, "/", "ada")
    bob, bob_in = client(transport, "/", "bob")
    try:
        assert ada.call("join", "python", timeout=TIMEOUT) is True
        assert bob.call("join", "python", timeout=TIMEOUT) is True
        assert ada.call("message", ("python", "hi bob"), timeout=TIMEOUT) is True
        assert expect(bob_in, "message") == [{"room": "python", "from": "ada", "text": "hi bob"}]
        assert ada.call("users", "python", timeout=TIMEOUT) == ["ada", "bob"]
    finally:
        ada.disconnect()
        bob.disconnect()


def main():
    passed = failed = 0
    for transport in ("polling", "websocket"):
        for case in (case_echo, case_auth, case_rooms):
            name = f"{case.__name__[5:]} over {transport}"
            try:
                case(transport)
                passed += 1
                print(f"ok {name}")
            except Exception:  # noqa: BLE001 - report every failure
                failed += 1
                print(f"FAILED {name}")
                traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
