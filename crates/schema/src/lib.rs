//! The schema engine of qualityfoundry_tenant, without PostgreSQL: a typed catalog model of one
//! schema ([`model`]), the object inventory ([`inventory`]), dependency ordering ([`order`]), one
//! DDL renderer per object kind ([`render`]) assembled into a clone plan ([`plan`]), the
//! structural diff with its exact and drift options ([`diff`]), policy templates ([`pin`]), and
//! the SQL text handling they rest on: identifier quoting and folding ([`ident`]), a tokenizer
//! ([`lexer`]) and schema-relative text ([`sqltext`]).
//!
//! The extension reads the catalogs into a [`Schema`] (its `src/catalog/`); everything here is
//! plain Rust over that value, tested with `cargo test -p qft-schema` on hand-made models and on
//! catalog snapshots of real PostgreSQL 15 schemas (`fixtures/`).

pub mod acl;
pub mod diff;
pub mod ident;
pub mod inventory;
pub mod lexer;
pub mod model;
pub mod order;
pub mod pin;
pub mod plan;
pub mod render;
pub mod sqltext;

pub use model::Schema;
pub use sqltext::SqlText;
