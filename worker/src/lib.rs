//! The worker SDK: register handlers per namespace and event, receive
//! typed arguments, emit to rooms and sockets, and an `Emitter` for any
//! process that only emits. Workers are stateless: everything a handler
//! needs arrives in the event envelope.
//!
//! Skeleton: filled in on top of `sio-bus`.

#![forbid(unsafe_code)]
