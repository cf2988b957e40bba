//! The policy templates and the template-schema rule, from the core crate (one definition).

pub use qft_schema::pin::{schema_pin, template_schema};
