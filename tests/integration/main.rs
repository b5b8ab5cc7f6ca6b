//! Integration tests: the real daemon, real Chromium, and a fixture site on 127.0.0.1:0.

mod api;
mod blocking;
mod capture;
mod chaos;
mod cluster;
mod credits;
mod dashboard;
mod egress;
mod emulation;
mod error_pages;
mod hardening_http;
mod hold;
mod hostile_pages;
mod interaction;
mod isolation;
mod ledger;
mod lifecycle;
mod notifications;
mod observability;
mod openapi;
mod payments;
mod readme;
mod redis_server;
mod service;
mod snippets;
mod support;
