//! One file per gRPC service: each translates requests into calls on `storage` and
//! `execution`, validates what the client sent, and maps errors to precise statuses.
