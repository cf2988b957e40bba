//! One test binary, so one throwaway cluster serves every test; each test makes its own database.
mod checker;
mod clone;
mod context;
mod foundation;
mod identity;
mod isolation;
mod migrate;
mod pooler;
mod review;
mod schemas;
mod versions;
