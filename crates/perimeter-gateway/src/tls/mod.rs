//! TLS as far as the gateway reads it without terminating it: the client's first flight.

pub mod client_hello;

pub use client_hello::{ClientHello, InvalidHello, parse_client_hello};
