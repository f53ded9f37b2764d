//! `#[requires_role(Role)]`: parse (`attr`, `handler`) → expand.

mod attr;
mod expand;
mod handler;

#[cfg(test)]
mod tests;

pub(crate) use expand::{expand, fallback};
