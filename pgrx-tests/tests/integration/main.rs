//! One test binary, so one throwaway cluster serves every test; each test makes its own database.
mod context;
mod foundation;
mod isolation;
mod migrate;
