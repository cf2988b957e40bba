//! One test binary, so one throwaway cluster serves every test; each test makes its own database.
mod checker;
mod clone;
mod context;
mod foundation;
mod isolation;
mod migrate;
mod pooler;
mod quotas;
mod review;
mod schemas;
mod versions;
