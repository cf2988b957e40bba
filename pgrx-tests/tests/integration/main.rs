//! One test binary, so one throwaway cluster serves every test; each test makes its own database.
mod backup;
mod catalog;
mod checker;
mod clone;
mod context;
mod foundation;
mod identity;
mod isolation;
mod lifecycle;
mod migrate;
mod orm;
mod pooler;
mod quotas;
mod replication;
mod review;
mod schemas;
mod versions;
