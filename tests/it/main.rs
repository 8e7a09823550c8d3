//! Integration tests that drive the real `tally` binary and its HTTP API.
//! One test binary for the whole workspace keeps link times down; it is
//! compiled as part of `tally-collector`, which owns the binary.

mod support;

mod admin;
mod browser;
mod catalog;
mod cli_queries;
mod cors;
mod crash;
mod dashboard;
mod delete_person;
mod http_ingest;
mod http_limits;
mod http_queries;
mod identity;
mod import_export;
mod messages;
mod review;
mod sdk_e2e;
mod segmentation;
mod store_damage;
mod store_failure;
mod store_fixture;
