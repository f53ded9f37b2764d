//! The HTTP handlers, one module per resource.

pub mod admin;
pub mod health;
pub mod invoices;
pub mod me;
pub mod projects;
