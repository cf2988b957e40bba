//! One test binary, so one throwaway cluster serves every test; each test makes its own database.
mod catalog;
mod checker;
mod clone;
mod context;
mod foundation;
mod isolation;
mod migrate;
mod review;
mod schemas;
